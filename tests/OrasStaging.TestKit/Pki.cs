using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace OrasStaging.TestKit;

/// <summary>A throwaway certificate authority, generated per run, for TLS and for signing tokens.</summary>
public sealed class Pki : IDisposable
{
    private Pki(X509Certificate2 ca)
    {
        Ca = ca;
    }

    /// <summary>The root certificate (with its private key).</summary>
    public X509Certificate2 Ca { get; }

    public static Pki Create(string commonName = "OrasStaging TestKit CA")
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest($"CN={commonName}", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign | X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var now = DateTimeOffset.UtcNow;
        using var cert = request.CreateSelfSigned(now.AddDays(-1), now.AddDays(30));
        return new Pki(Reload(cert));
    }

    /// <summary>A server certificate for 127.0.0.1 and localhost.</summary>
    public X509Certificate2 IssueServer()
    {
        var san = new SubjectAlternativeNameBuilder();
        san.AddIpAddress(IPAddress.Loopback);
        san.AddDnsName("localhost");
        return Issue("CN=127.0.0.1", r =>
        {
            r.CertificateExtensions.Add(san.Build());
            r.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
            r.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, true));
        });
    }

    /// <summary>A certificate whose key signs JWTs; the registry checks its chain against the CA.</summary>
    public X509Certificate2 IssueTokenSigner() => Issue("CN=OrasStaging TestKit token signer", r =>
        r.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true)));

    private X509Certificate2 Issue(string subject, Action<CertificateRequest> extend)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Ca, true, false));
        extend(request);
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7F;
        var now = DateTimeOffset.UtcNow;
        using var publicOnly = request.Create(Ca, now.AddDays(-1), now.AddDays(29), serial);
        using var withKey = publicOnly.CopyWithPrivateKey(key);
        return Reload(withKey);
    }

    // Kestrel on Linux and SslStream want a certificate whose key is not tied to a disposed RSA object.
    private static X509Certificate2 Reload(X509Certificate2 cert) =>
        X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), null, X509KeyStorageFlags.Exportable);

    public static void WriteCertificatePem(X509Certificate2 cert, string path) => File.WriteAllText(path, cert.ExportCertificatePem() + "\n");

    public static void WriteKeyPem(X509Certificate2 cert, string path)
    {
        using var rsa = cert.GetRSAPrivateKey() ?? throw new InvalidOperationException("certificate has no RSA private key");
        File.WriteAllText(path, rsa.ExportRSAPrivateKeyPem() + "\n");
    }

    /// <summary>Validates a server certificate against this run's CA only (not the system store).</summary>
    public static bool ValidateAgainst(X509Certificate2 caCert, X509Certificate2? serverCert)
    {
        if (serverCert is null) return false;
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(caCert);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(serverCert);
    }

    public void Dispose() => Ca.Dispose();
}
