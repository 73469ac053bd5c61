using System.Diagnostics;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;

namespace OrasStaging.TestKit;

/// <summary>How the registry authenticates clients.</summary>
public enum RegistryAuth
{
    /// <summary>No authentication.</summary>
    Anonymous,
    /// <summary>htpasswd (bcrypt) Basic authentication.</summary>
    Basic,
    /// <summary>Bearer tokens from our token server (auth.token: realm, service, issuer, rootcertbundle).</summary>
    Token,
}

public sealed class TestRegistryOptions
{
    public RegistryAuth Auth { get; set; } = RegistryAuth.Anonymous;
    public bool Tls { get; set; }
    /// <summary>expires_in of issued tokens (distribution accepts a token until 60 s after exp unless <see cref="StrictTokenExpiry"/>).</summary>
    public int TokenExpiresIn { get; set; } = 300;
    /// <summary>Make the registry refuse tokens exactly TokenExpiresIn seconds after issue (see TokenServer.StrictExpiry).</summary>
    public bool StrictTokenExpiry { get; set; }
    /// <summary>The expires_in told to clients; null: TokenExpiresIn (see TokenServer.AdvertisedExpiresInSeconds).</summary>
    public int? AdvertisedTokenExpiresIn { get; set; }
    /// <summary>The identitytoken (OAuth2 refresh token) the token server accepts; null: a random one per run.</summary>
    public string? RefreshToken { get; set; }
    public string Username { get; set; } = "tester";
    /// <summary>Null: a random password per run.</summary>
    public string? Password { get; set; }
    /// <summary>In token mode only the right credentials get a token for this repository.</summary>
    public string PrivateRepository { get; set; } = "lab/private";
    public TimeSpan StartTimeout { get; set; } = TimeSpan.FromSeconds(30);
    /// <summary>
    /// Run the registry as a pull-through cache of this URL (distribution's <c>proxy: remoteurl:</c>), e.g. another
    /// test registry's proxyUrl, so its fault proxy counts what the cache fetches from the origin.
    /// </summary>
    public string? ProxyRemoteUrl { get; set; }
}

/// <summary>The JSON line <c>serve</c> prints: every endpoint of a running <see cref="TestRegistry"/>.</summary>
public sealed class ServeInfo
{
    [JsonPropertyName("registry")] public string Registry { get; init; } = "";
    [JsonPropertyName("registryUrl")] public string RegistryUrl { get; init; } = "";
    [JsonPropertyName("proxy")] public string Proxy { get; init; } = "";
    [JsonPropertyName("proxyUrl")] public string ProxyUrl { get; init; } = "";
    [JsonPropertyName("controlUrl")] public string ControlUrl { get; init; } = "";
    [JsonPropertyName("cdnUrl")] public string CdnUrl { get; init; } = "";
    [JsonPropertyName("tokenUrl")] public string TokenUrl { get; init; } = "";
    [JsonPropertyName("service")] public string Service { get; init; } = "";
    [JsonPropertyName("issuer")] public string Issuer { get; init; } = "";
    [JsonPropertyName("auth")] public string Auth { get; init; } = "";
    [JsonPropertyName("tls")] public bool Tls { get; init; }
    [JsonPropertyName("scheme")] public string Scheme { get; init; } = "";
    [JsonPropertyName("username")] public string Username { get; init; } = "";
    [JsonPropertyName("password")] public string Password { get; init; } = "";
    [JsonPropertyName("caCertPath")] public string? CaCertPath { get; init; }
    [JsonPropertyName("privateRepository")] public string PrivateRepository { get; init; } = "";
    [JsonPropertyName("tokenExpiresIn")] public int TokenExpiresIn { get; init; }
    [JsonPropertyName("strictTokenExpiry")] public bool StrictTokenExpiry { get; init; }
    [JsonPropertyName("advertisedTokenExpiresIn")] public int AdvertisedTokenExpiresIn { get; init; }
    [JsonPropertyName("refreshToken")] public string RefreshToken { get; init; } = "";
    [JsonPropertyName("dataDir")] public string DataDir { get; init; } = "";
    [JsonPropertyName("storageDir")] public string StorageDir { get; init; } = "";
    [JsonPropertyName("registryLog")] public string RegistryLog { get; init; } = "";
    [JsonPropertyName("registryPid")] public int RegistryPid { get; init; }
    [JsonPropertyName("watchdogPid")] public int WatchdogPid { get; init; }
    [JsonPropertyName("pid")] public int Pid { get; init; }
    [JsonPropertyName("proxyRemoteUrl")] public string? ProxyRemoteUrl { get; init; }
}

/// <summary>
/// A real registry (docker-registry 2.8) with, in front of it, the fault proxy; beside it the token server,
/// the CDN and the control API. All on 127.0.0.1 with OS-chosen ports, all in one temporary directory that
/// disposal removes.
/// </summary>
public sealed class TestRegistry : IAsyncDisposable, IDisposable
{
    private readonly List<WebApplication> _apps = [];
    private readonly HttpMessageInvoker _upstream;
    private RegistryProcess? _registry;
    private int _disposed;

    private TestRegistry(TestRegistryOptions options, string dataDir, Pki pki)
    {
        Options = options;
        DataDir = dataDir;
        Pki = pki;
        _upstream = new HttpMessageInvoker(CreateHandler(pki.Ca), disposeHandler: true);
    }

    public TestRegistryOptions Options { get; }
    public string DataDir { get; }
    public Pki Pki { get; }
    public ServeInfo Info { get; private set; } = new();
    public FaultState Faults { get; } = new();
    public ProxyStats Stats { get; } = new();

    public static async Task<TestRegistry> StartAsync(TestRegistryOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new TestRegistryOptions();
        var dataDir = Path.Combine(Path.GetTempPath(), "orasstaging-testkit-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(6)).ToLowerInvariant());
        Directory.CreateDirectory(dataDir);
        var registry = new TestRegistry(options, dataDir, Pki.Create());
        try
        {
            await registry.StartCoreAsync(cancellationToken).ConfigureAwait(false);
            return registry;
        }
        catch
        {
            await registry.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    private async Task StartCoreAsync(CancellationToken cancellationToken)
    {
        var o = Options;
        var password = o.Password ?? "pw-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(8)).ToLowerInvariant();
        const string service = "orasstaging-testkit";
        const string issuer = "orasstaging-testkit-token-issuer";
        const string basicRealm = "orasstaging-testkit";
        var scheme = o.Tls ? "https" : "http";
        var storage = Path.Combine(DataDir, "storage");
        Directory.CreateDirectory(storage);

        var caPath = Path.Combine(DataDir, "ca.crt");
        Pki.WriteCertificatePem(Pki.Ca, caPath);
        X509Certificate2? serverCert = null;
        string? certPath = null, keyPath = null;
        if (o.Tls)
        {
            serverCert = Pki.IssueServer();
            certPath = Path.Combine(DataDir, "server.crt");
            keyPath = Path.Combine(DataDir, "server.key");
            Pki.WriteCertificatePem(serverCert, certPath);
            Pki.WriteKeyPem(serverCert, keyPath);
        }

        // The token server runs in every mode: the proxy's Unauthorized fault points clients at it.
        var signer = Pki.IssueTokenSigner();
        var refreshToken = o.RefreshToken ?? "rt-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(12)).ToLowerInvariant();
        var tokens = new TokenServer(signer, service, issuer, o.Username, password, o.PrivateRepository, o.TokenExpiresIn, Stats, o.StrictTokenExpiry,
            o.AdvertisedTokenExpiresIn, refreshToken);
        var tokenPort = await StartAppAsync(serverCert, app => app.Run(tokens.HandleAsync), cancellationToken).ConfigureAwait(false);
        var tokenUrl = $"{scheme}://127.0.0.1:{tokenPort}/token";

        string? htpasswdPath = null;
        if (o.Auth == RegistryAuth.Basic)
        {
            htpasswdPath = Path.Combine(DataDir, "htpasswd");
            File.WriteAllText(htpasswdPath, Htpasswd(o.Username, password));
        }

        string Config(int port)
        {
            var sb = new StringBuilder();
            sb.AppendLine("version: 0.1");
            sb.AppendLine("log:");
            sb.AppendLine("  level: info");
            sb.AppendLine("  formatter: text");
            sb.AppendLine("storage:");
            sb.AppendLine("  filesystem:");
            sb.AppendLine($"    rootdirectory: \"{storage}\"");
            sb.AppendLine("  delete:");
            sb.AppendLine("    enabled: true");
            sb.AppendLine("  maintenance:");
            sb.AppendLine("    uploadpurging:");
            sb.AppendLine("      enabled: false");
            sb.AppendLine("http:");
            sb.AppendLine($"  addr: 127.0.0.1:{port}");
            sb.AppendLine($"  secret: \"{Convert.ToHexString(RandomNumberGenerator.GetBytes(16))}\"");
            if (o.Tls)
            {
                sb.AppendLine("  tls:");
                sb.AppendLine($"    certificate: \"{certPath}\"");
                sb.AppendLine($"    key: \"{keyPath}\"");
            }
            if (o.ProxyRemoteUrl is { } remote)
            {
                sb.AppendLine("proxy:");
                sb.AppendLine($"  remoteurl: \"{remote}\"");
            }
            switch (o.Auth)
            {
                case RegistryAuth.Basic:
                    sb.AppendLine("auth:");
                    sb.AppendLine("  htpasswd:");
                    sb.AppendLine($"    realm: \"{basicRealm}\"");
                    sb.AppendLine($"    path: \"{htpasswdPath}\"");
                    break;
                case RegistryAuth.Token:
                    sb.AppendLine("auth:");
                    sb.AppendLine("  token:");
                    sb.AppendLine($"    realm: \"{tokenUrl}\"");
                    sb.AppendLine($"    service: \"{service}\"");
                    sb.AppendLine($"    issuer: \"{issuer}\"");
                    sb.AppendLine($"    rootcertbundle: \"{caPath}\"");
                    break;
            }
            return sb.ToString();
        }

        _registry = await RegistryProcess.StartAsync(DataDir, Config, _upstream, o.Tls, o.StartTimeout, cancellationToken).ConfigureAwait(false);
        var registryUrl = $"{scheme}://127.0.0.1:{_registry.Port}";

        string Challenge(string repository) => o.Auth == RegistryAuth.Basic
            ? $"Basic realm=\"{basicRealm}\""
            : $"Bearer realm=\"{tokenUrl}\",service=\"{service}\",scope=\"repository:{repository}:pull\"";

        var proxy = new FaultProxy(new Uri(registryUrl), _upstream, Faults, Stats, Challenge,
            Path.Combine(storage, "docker", "registry", "v2", "blobs"));
        var cdnPort = await StartAppAsync(serverCert, app => app.Run(proxy.HandleCdnAsync), cancellationToken).ConfigureAwait(false);
        proxy.CdnBaseUrl = $"{scheme}://127.0.0.1:{cdnPort}";
        var proxyPort = await StartAppAsync(serverCert, app => app.Run(proxy.HandleAsync), cancellationToken).ConfigureAwait(false);
        // The control API is for the tests only: always plain HTTP.
        var controlPort = await StartAppAsync(null, app => app.Run(proxy.HandleControlAsync), cancellationToken).ConfigureAwait(false);

        Info = new ServeInfo
        {
            Registry = $"127.0.0.1:{_registry.Port}",
            RegistryUrl = registryUrl,
            Proxy = $"127.0.0.1:{proxyPort}",
            ProxyUrl = $"{scheme}://127.0.0.1:{proxyPort}",
            ControlUrl = $"http://127.0.0.1:{controlPort}",
            CdnUrl = proxy.CdnBaseUrl,
            TokenUrl = tokenUrl,
            Service = service,
            Issuer = issuer,
            Auth = o.Auth.ToString().ToLowerInvariant(),
            Tls = o.Tls,
            Scheme = scheme,
            Username = o.Username,
            Password = password,
            CaCertPath = o.Tls ? caPath : null,
            PrivateRepository = o.PrivateRepository,
            TokenExpiresIn = o.TokenExpiresIn,
            StrictTokenExpiry = o.StrictTokenExpiry,
            AdvertisedTokenExpiresIn = tokens.AdvertisedExpiresInSeconds,
            RefreshToken = refreshToken,
            DataDir = DataDir,
            StorageDir = storage,
            RegistryLog = _registry.LogPath,
            RegistryPid = _registry.Pid,
            WatchdogPid = _registry.WatchdogPid,
            Pid = Environment.ProcessId,
            ProxyRemoteUrl = o.ProxyRemoteUrl,
        };
    }

    private async Task<int> StartAppAsync(X509Certificate2? cert, Action<WebApplication> configure, CancellationToken cancellationToken)
    {
        var (app, port) = await KestrelHost.StartAsync(cert, configure, cancellationToken).ConfigureAwait(false);
        lock (_apps) _apps.Add(app);
        return port;
    }

    /// <summary>An htpasswd line with a bcrypt hash (distribution 2.8 accepts only bcrypt), made by apache2-utils.</summary>
    private static string Htpasswd(string user, string password)
    {
        var psi = new ProcessStartInfo("htpasswd") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "-nbB", "-C", "5", user, password }) psi.ArgumentList.Add(a);
        Process process;
        try
        {
            process = Process.Start(psi)!;
        }
        catch (System.ComponentModel.Win32Exception ex)
        {
            throw new InvalidOperationException("htpasswd was not found (basic-auth mode needs bcrypt). Run: sudo apt-get install -y apache2-utils", ex);
        }
        using (process)
        {
            var output = process.StandardOutput.ReadToEnd();
            var error = process.StandardError.ReadToEnd();
            if (!process.WaitForExit(30000) || process.ExitCode != 0) throw new InvalidOperationException($"htpasswd failed: {error}");
            return output.Trim() + "\n";
        }
    }

    /// <summary>A handler that trusts this run's CA only; no redirects, no proxies, no decompression.</summary>
    public static SocketsHttpHandler CreateHandler(X509Certificate2? caCertificate, bool allowRedirect = false)
    {
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = allowRedirect,
            UseCookies = false,
            UseProxy = false,
            AutomaticDecompression = System.Net.DecompressionMethods.None,
            ConnectTimeout = TimeSpan.FromSeconds(10),
        };
        if (caCertificate is not null)
        {
            handler.SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, cert, _, errors) =>
                    errors == SslPolicyErrors.None || Pki.ValidateAgainst(caCertificate, cert as X509Certificate2 ?? (cert is null ? null : new X509Certificate2(cert))),
            };
        }
        return handler;
    }

    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        WebApplication[] apps;
        lock (_apps) apps = [.. _apps];
        // In parallel and briefly: clients' idle keep-alive connections would otherwise hold each stop.
        await Task.WhenAll(apps.Select(async app =>
        {
            try
            {
                using var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(500));
                await app.StopAsync(cts.Token).ConfigureAwait(false);
                await app.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Best effort: the process is going away and the ports die with it.
            }
        })).ConfigureAwait(false);
        _registry?.Dispose();
        _upstream.Dispose();
        Pki.Dispose();
        for (int i = 0; i < 5 && Directory.Exists(DataDir); i++)
        {
            try
            {
                Directory.Delete(DataDir, recursive: true);
            }
            catch (IOException)
            {
                Thread.Sleep(200);
            }
            catch (UnauthorizedAccessException)
            {
                Thread.Sleep(200);
            }
        }
    }
}
