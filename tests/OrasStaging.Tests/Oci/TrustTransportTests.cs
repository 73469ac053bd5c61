using System.Net;
using System.Net.Sockets;
using System.Text;
using OrasStaging.Oci;
using Kit = OrasStaging.TestKit;

namespace OrasStaging.Tests.Oci;

/// <summary>
/// Issue 9, "never hang, never loop" and "fails closed" at the transport: small bodies (manifests, tokens, error
/// bodies) under the stall rule and retries, a definite "no such host" without retries, no https-to-http redirect.
/// The stalls of a manifest body go through the real registry and the TestKit's fault proxy; what that proxy
/// cannot produce (resolver answers, a redirect from https, a token service's body) comes from fakes.
/// </summary>
public sealed class TrustTransportTests : IDisposable
{
    private readonly RecordingSink _sink = new();
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(90));

    /// <summary>Lets a fake server's stalled answer go once the test is over (it holds far longer than the client waits).</summary>
    private readonly ManualResetEventSlim _release = new();

    public void Dispose()
    {
        _release.Set();
        _timeout.Dispose();
    }

    private CancellationToken Ct => _timeout.Token;

    private static RegistryOptions Options(int retries = 3) => new()
    {
        RetryIntervalSec = 0,
        MaximumRetryCount = retries,
        CacheServer = string.Empty,
        StallTimeout = TimeSpan.FromSeconds(1),
        DockerConfigPath = "/nonexistent/config.json",
    };

    /// <summary>Answers every request through <paramref name="answer"/>, which may throw as a failed connection does.</summary>
    private sealed class FakeHandler(Func<HttpRequestMessage, HttpResponseMessage> answer) : HttpMessageHandler
    {
        public List<Uri> Requests { get; } = new();

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            lock (Requests)
            {
                Requests.Add(request.RequestUri!);
            }

            return Task.FromResult(answer(request));
        }
    }

    private static HttpRequestException ResolverFailure(SocketError error) =>
        new(HttpRequestError.NameResolutionError, "Name or service not known (registry.invalid:443)", new SocketException((int)error));

    [Fact]
    public async Task A_host_that_does_not_resolve_fails_at_once_naming_it()
    {
        var handler = new FakeHandler(_ => throw ResolverFailure(SocketError.HostNotFound));
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => new RegistryClient(Options(), _sink, handler)
            .ResolveAsync(ImageReference.Parse("oras://registry.invalid/lab/x:y"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.RegistryUnavailable, ex.Code);
        Assert.Contains("'registry.invalid' does not resolve", ex.Message);
        Assert.Single(handler.Requests);
    }

    [Fact]
    public async Task A_resolver_time_out_is_still_retried()
    {
        var handler = new FakeHandler(_ => throw ResolverFailure(SocketError.TryAgain));
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => new RegistryClient(Options(retries: 3), _sink, handler)
            .ResolveAsync(ImageReference.Parse("oras://registry.invalid/lab/x:y"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.RegistryUnavailable, ex.Code);
        Assert.Equal(4, handler.Requests.Count);
    }

    [Fact]
    public async Task A_redirect_from_https_to_http_is_refused()
    {
        var handler = new FakeHandler(request =>
        {
            if (request.RequestUri!.Scheme == "https")
            {
                var redirect = new HttpResponseMessage(HttpStatusCode.TemporaryRedirect);
                redirect.Headers.Location = new Uri("http://cdn.invalid/blobs/x?X-Amz-Signature=secret");
                return redirect;
            }

            return new HttpResponseMessage(HttpStatusCode.OK) { Content = new ByteArrayContent("{}"u8.ToArray()) };
        });
        var options = Options();
        options.Anonymous = true;
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => new RegistryClient(options, _sink, handler)
            .ResolveAsync(ImageReference.Parse("oras://registry.invalid/lab/x:y"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.RegistryProtocolError, ex.Code);
        Assert.Contains("from https to http", ex.Message);
        Assert.DoesNotContain("secret", ex.Message);
        Assert.All(handler.Requests, uri => Assert.Equal("https", uri.Scheme));
    }

    /// <summary>A registry behind a token service whose first answer(s) stall or drop mid-body.</summary>
    private FakeRegistry TokenRegistry(Func<int, string> tokenAnswer, out Func<int> tokenCalls)
    {
        var reg = new FakeRegistry();
        reg.AddImage("lab/a", "v1", ("application/vnd.nosi.disk-image.layer.v1+gzip", new byte[] { 1, 2, 3 }, "a.img.gz"));
        int calls = 0;
        tokenCalls = () => Volatile.Read(ref calls);
        reg.Intercept = ctx =>
        {
            if (ctx.Request.Url!.AbsolutePath == "/token")
            {
                byte[] body = Encoding.UTF8.GetBytes("{\"token\":\"granted\",\"expires_in\":300}");
                switch (tokenAnswer(Interlocked.Increment(ref calls)))
                {
                    case "stall":
                        // Headers and a few bytes, then nothing for longer than the client's stall timeout.
                        ctx.Response.ContentLength64 = body.Length;
                        ctx.Response.OutputStream.Write(body, 0, 5);
                        ctx.Response.OutputStream.Flush();
                        _release.Wait(TimeSpan.FromSeconds(120));
                        ctx.Response.Abort();
                        return true;
                    case "cut":
                        ctx.Response.ContentLength64 = body.Length;
                        ctx.Response.OutputStream.Write(body, 0, 5);
                        ctx.Response.OutputStream.Flush();
                        ctx.Response.Abort();
                        return true;
                    default:
                        FakeRegistry.WriteBody(ctx, body, 200);
                        return true;
                }
            }

            if (ctx.Request.Headers["Authorization"] != "Bearer granted")
            {
                ctx.Response.Headers["WWW-Authenticate"] = $"Bearer realm=\"http://{reg.Host}/token\",service=\"fake\",scope=\"repository:lab/a:pull\"";
                FakeRegistry.WriteStatus(ctx, 401, "UNAUTHORIZED");
                return true;
            }

            return false;
        };
        return reg;
    }

    [Fact]
    public async Task A_token_response_that_stalls_mid_body_is_retried()
    {
        using var reg = TokenRegistry(n => n == 1 ? "stall" : "ok", out var tokenCalls);
        var options = Options();
        options.PlainHttp = true;
        var image = await new RegistryClient(options, _sink)
            .ResolveAsync(ImageReference.Parse($"oras://{reg.Host}/lab/a:v1"), new ResolveOptions(), Ct);
        Assert.Equal("a.img.gz", image.Title);
        Assert.Equal(2, tokenCalls());
    }

    [Fact]
    public async Task A_token_response_that_always_drops_mid_body_is_RegistryUnavailable()
    {
        using var reg = TokenRegistry(_ => "cut", out var tokenCalls);
        var options = Options(retries: 2);
        options.PlainHttp = true;
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => new RegistryClient(options, _sink)
            .ResolveAsync(ImageReference.Parse($"oras://{reg.Host}/lab/a:v1"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.RegistryUnavailable, ex.Code);
        Assert.Contains("token service", ex.Message);
        Assert.Equal(3, tokenCalls());
    }

    [Fact]
    public async Task An_error_body_that_stalls_does_not_hide_the_status()
    {
        using var reg = new FakeRegistry();
        reg.Intercept = ctx =>
        {
            ctx.Response.StatusCode = 404;
            ctx.Response.ContentLength64 = 1000;
            ctx.Response.OutputStream.Write("{\"errors\""u8);
            ctx.Response.OutputStream.Flush();
            _release.Wait(TimeSpan.FromSeconds(120));
            ctx.Response.Abort();
            return true;
        };
        var options = Options();
        options.PlainHttp = true;
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => new RegistryClient(options, _sink)
            .ResolveAsync(ImageReference.Parse($"oras://{reg.Host}/lab/a:v1"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.ManifestNotFound, ex.Code);
    }

    [Fact]
    public async Task A_manifest_body_that_stalls_behind_the_proxy_is_retried_and_one_that_always_stalls_is_RegistryUnavailable()
    {
        string image = Path.Combine(Path.GetTempPath(), $"trust-stall-{Guid.NewGuid():n}.img");
        try
        {
            Kit.DiskImageGenerator.WriteFile(image, (1 << 20) + 512, 5);
            await using var registry = await Kit.TestRegistry.StartAsync(new Kit.TestRegistryOptions(), Ct);
            var pushed = await Kit.ArtifactPusher.PushAsync(new Kit.PushOptions
            {
                Registry = registry.Info.Registry,
                Repository = "lab/stall",
                ImagePath = image,
            }, Ct);
            var reference = ImageReference.Parse($"oras://{registry.Info.Proxy}/lab/stall:latest");

            // Headers and 50 bytes of the manifest, then silence: one stall timeout, one retry.
            registry.Faults.Add(new Kit.FaultSpec { Kind = "Stall", Target = "manifest", AfterBytes = 50, Times = 1 });
            var resolved = await new RegistryClient(Options(), _sink).ResolveAsync(reference, new ResolveOptions(), Ct);
            Assert.Equal(pushed.Digest, resolved.Digest);
            Assert.Equal(1, registry.Stats.Snapshot().FaultsFired["stall"]);

            registry.Faults.Clear();
            registry.Faults.Add(new Kit.FaultSpec { Kind = "Stall", Target = "manifest", AfterBytes = 50, Times = -1 });
            var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
                new RegistryClient(Options(retries: 1), _sink).ResolveAsync(reference, new ResolveOptions(), Ct));
            registry.Faults.Clear();
            Assert.Equal(ErrorCode.RegistryUnavailable, ex.Code);
            Assert.Contains("stalled", ex.Message);
        }
        finally
        {
            File.Delete(image);
        }
    }
    [Fact]
    public async Task A_loopback_tls_registry_with_an_untrusted_certificate_is_a_certificate_error_and_a_plain_one_still_falls_back()
    {
        await using (var tls = await Kit.TestRegistry.StartAsync(new Kit.TestRegistryOptions { Tls = true }, Ct))
        {
            // Without -PlainHttp: https first; its CA is not trusted here, which is said, and not taken for "no TLS".
            var ex = await Assert.ThrowsAsync<OrasStagingException>(() => new RegistryClient(Options(retries: 0), _sink)
                .ResolveAsync(ImageReference.Parse($"oras://{tls.Info.Registry}/lab/none:v1"), new ResolveOptions(), Ct));
            Assert.Equal(ErrorCode.RegistryUnavailable, ex.Code);
            Assert.Contains("TLS certificate of 127.0.0.1 was refused", ex.Message);
        }

        // The refusal above was for another port of the same host: a plain registry there still gets http.
        using var plain = new FakeRegistry();
        plain.AddImage("lab/a", "v1", ("application/vnd.nosi.disk-image.layer.v1+gzip", new byte[] { 1, 2, 3 }, "a.img.gz"));
        var image = await new RegistryClient(Options(retries: 0), _sink)
            .ResolveAsync(ImageReference.Parse($"oras://{plain.Host}/lab/a:v1"), new ResolveOptions(), Ct);
        Assert.Equal("a.img.gz", image.Title);
        Assert.StartsWith("http://", image.BlobUri!.AbsoluteUri);
    }
}
