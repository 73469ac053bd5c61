using System.Net;
using OrasStaging.Oci;
using OrasStaging.Oci.Mirrors;
using OrasStaging.Tests.Staging;

namespace OrasStaging.Tests.Mirrors;

public class SourceTransportsTests
{
    private static readonly RegistriesConf Conf = RegistriesConfFile.Parse("""
        [[registry]]
        prefix = "origin.lab"
        location = "origin.lab"
        insecure = true

        [[registry.mirror]]
        location = "mirror.lab/cache"
        """, "t.conf");

    private static (SourceTransports Transports, SourcePlan Plan, RegistryTransport Origin) Build(RegistryOptions options)
    {
        var sink = new ListSink();
        var origin = new RegistryTransport(options, sink);
        var plan = SourcePlanner.Plan(ImageReference.Parse("origin.lab/disk:1"), Conf, new[] { AdHocMirror.Parse("http://adhoc.lab:5000") }, null);
        return (new SourceTransports(options, sink, null, origin), plan, origin);
    }

    [Fact]
    public async Task CredentialGoesToTheOriginOnlyAndMirrorsGetBoundedRetries()
    {
        var options = new RegistryOptions { Credential = new NetworkCredential("u", "p"), MaximumRetryCount = 5, RetryIntervalSec = 4, PlainHttp = false };
        var (transports, plan, _) = Build(options);
        var adHoc = await transports.EndpointAsync(plan.Sources[0], CancellationToken.None);
        var mirror = await transports.EndpointAsync(plan.Sources[1], CancellationToken.None);
        var origin = await transports.EndpointAsync(plan.Sources[2], CancellationToken.None);

        Assert.Equal(SourceKind.Origin, origin.Source.Kind);
        Assert.Same(options.Credential, origin.Transport.Options.Credential);
        Assert.Equal(5, origin.Transport.Options.MaximumRetryCount);
        foreach (var m in new[] { adHoc, mirror })
        {
            Assert.Equal(SourceKind.Mirror, m.Source.Kind);
            Assert.Null(m.Transport.Options.Credential);
            Assert.Equal(SourceTransports.MirrorRetries, m.Transport.Options.MaximumRetryCount);
            Assert.Equal(1, m.Transport.Options.RetryIntervalSec);
            Assert.True(m.Transport.Options.StallTimeout <= SourceTransports.MirrorStallTimeout);
        }

        Assert.Equal("mirror adhoc.lab:5000/disk", adHoc.Label);
        Assert.Equal("mirror mirror.lab/cache/disk", mirror.Label);
        Assert.Equal("origin origin.lab/disk", origin.Label);
    }

    [Fact]
    public async Task InsecureSourcesSkipCertificateChecksAndFallBackToPlainHttpWhenThereIsNoTls()
    {
        // Port 1 on loopback refuses connections: the https probe fails below HTTP, so the insecure origin uses http.
        var conf = RegistriesConfFile.Parse("""
            [[registry]]
            prefix = "127.0.0.1:1"
            location = "127.0.0.1:1"
            insecure = true

            [[registry.mirror]]
            location = "127.0.0.2:1/cache"
            """, "loop.conf");
        var options = new RegistryOptions { SkipCertificateCheck = true };
        var sink = new ListSink();
        var originTransport = new RegistryTransport(options, sink);
        var plan = SourcePlanner.Plan(ImageReference.Parse("127.0.0.1:1/disk:1"), conf, new[] { AdHocMirror.Parse("http://adhoc.lab:5000") }, null);
        var transports = new SourceTransports(options, sink, null, originTransport);

        var adHoc = await transports.EndpointAsync(plan.Sources[0], CancellationToken.None);
        Assert.True(adHoc.Source.Insecure);
        Assert.True(adHoc.Transport.UsesPlainHttp("adhoc.lab:5000"));

        var secureMirror = await transports.EndpointAsync(plan.Sources[1], CancellationToken.None);
        Assert.False(secureMirror.Source.Insecure);
        Assert.False(secureMirror.Transport.UsesPlainHttp("127.0.0.2:1"), "-SkipCertificateCheck means TLS, and the mirror is not insecure");

        var insecureOrigin = await transports.EndpointAsync(plan.Sources[2], CancellationToken.None);
        Assert.True(insecureOrigin.Source.Insecure);
        Assert.NotSame(originTransport, insecureOrigin.Transport);
        Assert.True(insecureOrigin.Transport.Options.SkipCertificateCheck);
        Assert.True(insecureOrigin.Transport.UsesPlainHttp("127.0.0.1:1"));
    }

    [Fact]
    public void TheLastErrorKeepsItsCodeAndNamesEverySkippedSource()
    {
        var last = new OrasStagingException(ErrorCode.BlobNotFound, "origin said 404.", "Check it.");
        var combined = SourceTransports.WithFailures(last, new[] { "mirror a/x: HTTP 503", "mirror b/x: no answer in time" });
        Assert.Equal(ErrorCode.BlobNotFound, combined.Code);
        Assert.Equal("Check it.", combined.RecommendedAction);
        Assert.Contains("mirror a/x: HTTP 503", combined.Message);
        Assert.Contains("mirror b/x: no answer in time", combined.Message);
        Assert.Same(last, SourceTransports.WithFailures(last, Array.Empty<string>()));

        Assert.True(SourceTransports.IsSkippable(new OrasStagingException(ErrorCode.RegistryUnavailable, "down"), CancellationToken.None));
        Assert.True(SourceTransports.IsSkippable(new HttpRequestException("refused"), CancellationToken.None));
        Assert.False(SourceTransports.IsSkippable(new OrasStagingException(ErrorCode.DigestMismatch, "wrong bytes"), CancellationToken.None));
    }
}
