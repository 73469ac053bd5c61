using System.Collections.Concurrent;
using System.Net;
using System.Text;
using OrasStaging.Oci;
using OrasStaging.Oci.Auth;

namespace OrasStaging.Tests.Oci;

internal sealed class RecordingSink : IOperationSink
{
    public ConcurrentQueue<string> Verbose { get; } = new();

    public ConcurrentQueue<string> Warnings { get; } = new();

    public long LastCompleted;

    public void Progress(ProgressInfo info) => Interlocked.Exchange(ref LastCompleted, info.Completed);

    void IOperationSink.Verbose(string message) => Verbose.Enqueue(message);

    public void Warning(string message) => Warnings.Enqueue(message);

    public string All => string.Join("\n", Verbose.Concat(Warnings));
}

public sealed class ProtocolTests : IDisposable
{
    private const string Nosi = "application/vnd.nosi.disk-image.layer.v1+gzip";
    private readonly FakeRegistry _reg = new();
    private readonly RecordingSink _sink = new();
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(60));
    private readonly string _dir = Directory.CreateTempSubdirectory("oci-tests-").FullName;

    public void Dispose()
    {
        _reg.Dispose();
        _timeout.Dispose();
        Directory.Delete(_dir, true);
    }

    private CancellationToken Ct => _timeout.Token;

    private RegistryClient Client(RegistryOptions? options = null) =>
        new(options ?? Options(), _sink);

    private static RegistryOptions Options() => new()
    {
        RetryIntervalSec = 0,
        CacheServer = string.Empty,
        StallTimeout = TimeSpan.FromSeconds(10),
        DockerConfigPath = "/nonexistent/config.json",
    };

    private static byte[] Data(int size, int seed = 7)
    {
        var data = new byte[size];
        new Random(seed).NextBytes(data);
        return data;
    }

    private ImageReference Ref(string tail) => ImageReference.Parse($"oras://{_reg.Host}/{tail}");

    private static async Task<byte[]> ReadAllAsync(Stream s)
    {
        using var ms = new MemoryStream();
        await s.CopyToAsync(ms);
        return ms.ToArray();
    }

    [Fact]
    public async Task Resolves_a_tag_to_the_nosi_layer()
    {
        var img = Data(3000);
        string manifest = _reg.AddImage("lab/debian", "latest", (Nosi, img, "debian.img.gz"), ("text/plain", Encoding.UTF8.GetBytes(FakeRegistry.Digest(img)[7..] + "  debian.img.gz\n"), "debian.img.gz.sha256"));
        var image = await Client().ResolveAsync(Ref("lab/debian:latest"), new ResolveOptions(), Ct);
        Assert.Equal(manifest, image.ManifestDigest);
        Assert.Equal(FakeRegistry.Digest(img), image.Digest);
        Assert.Equal(3000, image.Size);
        Assert.Equal("debian.img.gz", image.Title);
        Assert.Equal(PinnedKind.None, image.PinnedKind);
        Assert.Equal(2, image.Layers.Count);
        Assert.Equal("application/vnd.nosi.disk-image.v1+gzip", image.ArtifactType);
        Assert.Equal(new Uri($"http://{_reg.Host}/v2/lab/debian/blobs/{image.Digest}"), image.BlobUri);
        Assert.Contains("agrees with the layer digest", _sink.All);
    }

    [Fact]
    public async Task A_sidecar_that_disagrees_is_a_digest_mismatch()
    {
        _reg.AddImage("lab/debian", "latest", (Nosi, Data(100), "d.img.gz"), ("text/plain", Encoding.UTF8.GetBytes(new string('0', 64) + "  d.img.gz\n"), "d.img.gz.sha256"));
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Client().ResolveAsync(Ref("lab/debian:latest"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.DigestMismatch, ex.Code);
    }

    [Fact]
    public async Task A_pinned_digest_is_told_apart_even_when_the_manifest_endpoint_answers_500()
    {
        _reg.ManifestEndpoint500ForBlobs = true;
        var img = Data(1234);
        string manifest = _reg.AddImage("lab/debian", "latest", (Nosi, img, "debian.img.gz"));
        string blob = FakeRegistry.Digest(img);

        var byBlob = await Client().ResolveAsync(Ref($"lab/debian@{blob}"), new ResolveOptions(), Ct);
        Assert.Equal((PinnedKind.Blob, blob, 1234L, (string?)null), (byBlob.PinnedKind, byBlob.Digest, byBlob.Size, byBlob.ManifestDigest));
        // The 500 on /manifests/ was not retried: one HEAD there.
        Assert.Single(_reg.Requests, r => r.Method == "HEAD" && r.Path.Contains("/manifests/"));

        var withTag = await Client().ResolveAsync(Ref($"lab/debian:latest@{blob}"), new ResolveOptions(), Ct);
        Assert.Equal((PinnedKind.Blob, "debian.img.gz", manifest), (withTag.PinnedKind, withTag.Title, withTag.ManifestDigest));

        var byManifest = await Client().ResolveAsync(Ref($"lab/debian@{manifest}"), new ResolveOptions(), Ct);
        Assert.Equal((PinnedKind.Manifest, blob, manifest), (byManifest.PinnedKind, byManifest.Digest, byManifest.ManifestDigest));

        var missing = await Assert.ThrowsAsync<OrasStagingException>(() =>
            Client().ResolveAsync(Ref($"lab/debian@sha256:{new string('e', 64)}"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.ManifestNotFound, missing.Code);
    }

    [Theory]
    [InlineData("127.0.0.1:5001", null, false, true)]
    [InlineData("127.0.0.1:5001", null, true, true)]
    [InlineData("localhost:5001", null, false, true)]
    [InlineData("[::1]:5001", null, false, true)]
    [InlineData("127.0.0.1:5001", true, false, false)]
    [InlineData("ghcr.io", null, false, true)]
    [InlineData("ghcr.io", true, false, false)]
    [InlineData("127.0.0.1:5001", false, false, true)]
    public void Loopback_asks_https_first_unless_told(string registry, bool? plainHttp, bool skipCertificateCheck, bool https)
    {
        var transport = new RegistryTransport(new RegistryOptions { PlainHttp = plainHttp, SkipCertificateCheck = skipCertificateCheck }, _sink);
        Assert.Equal(https ? "https" : "http", transport.RegistryUri(registry, "/v2/").Scheme);
    }

    [Fact]
    public async Task Registry_warnings_are_surfaced_once()
    {
        _reg.AddImage("lab/a", "v1", (Nosi, Data(10), "a.img.gz"));
        _reg.Intercept = ctx =>
        {
            ctx.Response.Headers.Add("Warning", "299 - \"this repository is deprecated\"");
            return false;
        };
        var client = Client();
        await client.ResolveAsync(Ref("lab/a:v1"), new ResolveOptions(), Ct);
        await client.ResolveAsync(Ref("lab/a:v1"), new ResolveOptions(), Ct);
        Assert.Equal(new[] { $"{_reg.Host}: this repository is deprecated" }, _sink.Warnings);
    }

    [Fact]
    public async Task A_remembered_Basic_challenge_does_not_stop_anonymous_pulls_of_a_public_repository()
    {
        _reg.AddImage("lab/private", "v1", (Nosi, Data(10, 1), "p.img.gz"));
        _reg.AddImage("lab/public", "v1", (Nosi, Data(10, 2), "q.img.gz"));
        string basic = "Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("u:pw"));
        _reg.Intercept = ctx =>
        {
            if (ctx.Request.Url!.AbsolutePath.StartsWith("/v2/lab/private/", StringComparison.Ordinal) && ctx.Request.Headers["Authorization"] != basic)
            {
                ctx.Response.Headers["WWW-Authenticate"] = "Basic realm=\"fake\"";
                FakeRegistry.WriteStatus(ctx, 401, "UNAUTHORIZED");
                return true;
            }

            return false;
        };
        var withCredential = Options();
        withCredential.Credential = new NetworkCredential("u", "pw");
        Assert.Equal("p.img.gz", (await Client(withCredential).ResolveAsync(Ref("lab/private:v1"), new ResolveOptions(), Ct)).Title);
        Assert.Equal("q.img.gz", (await Client().ResolveAsync(Ref("lab/public:v1"), new ResolveOptions(), Ct)).Title);
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Client().ResolveAsync(Ref("lab/private:v1"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.AuthenticationFailed, ex.Code);
    }

    [Fact]
    public async Task Unknown_tag_is_ManifestNotFound()
    {
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Client().ResolveAsync(Ref("lab/none:latest"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.ManifestNotFound, ex.Code);
        Assert.Contains("MANIFEST_UNKNOWN", ex.Message);
    }

    [Fact]
    public async Task A_missing_Docker_Content_Digest_falls_back_to_the_body_hash_and_a_wrong_one_is_refused()
    {
        string manifest = _reg.AddImage("lab/a", "v1", (Nosi, Data(10), "a.img.gz"));
        _reg.SendDigestHeader = false;
        var image = await Client().ResolveAsync(Ref("lab/a:v1"), new ResolveOptions(), Ct);
        Assert.Equal(manifest, image.ManifestDigest);
        Assert.Contains("no Docker-Content-Digest", _sink.All);

        _reg.Intercept = ctx =>
        {
            if (!ctx.Request.Url!.AbsolutePath.Contains("/manifests/"))
            {
                return false;
            }

            var m = _reg.Manifests["lab/a/v1"];
            ctx.Response.ContentType = m.MediaType;
            ctx.Response.Headers["Docker-Content-Digest"] = "sha256:" + new string('f', 64);
            FakeRegistry.WriteBody(ctx, m.Body, 200);
            return true;
        };
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Client().ResolveAsync(Ref("lab/a:v1"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.DigestMismatch, ex.Code);
    }

    [Fact]
    public async Task An_oversize_manifest_is_refused()
    {
        _reg.Intercept = ctx =>
        {
            ctx.Response.ContentType = "application/vnd.oci.image.manifest.v1+json";
            FakeRegistry.WriteBody(ctx, new byte[RegistryClient.MaxManifestBytes + 1], 200);
            return true;
        };
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Client().ResolveAsync(Ref("lab/a:v1"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.RegistryProtocolError, ex.Code);
        Assert.Contains("manifest", ex.Message);
    }

    [Fact]
    public async Task An_index_picks_the_platform()
    {
        string amd = _reg.AddImage("lab/multi", "amd", (Nosi, Data(11, 1), "amd.img.gz"));
        string arm = _reg.AddImage("lab/multi", "arm", (Nosi, Data(22, 2), "arm.img.gz"));
        _reg.AddManifest("lab/multi", "latest", new
        {
            schemaVersion = 2,
            mediaType = "application/vnd.oci.image.index.v1+json",
            manifests = new object[]
            {
                new { mediaType = "application/vnd.oci.image.manifest.v1+json", digest = amd, size = 1, platform = new { os = "linux", architecture = "amd64" } },
                new { mediaType = "application/vnd.oci.image.manifest.v1+json", digest = arm, size = 1, platform = new { os = "linux", architecture = "arm64", variant = "v8" } },
            },
        }, "application/vnd.oci.image.index.v1+json");
        var image = await Client().ResolveAsync(Ref("lab/multi:latest"), new ResolveOptions { Platform = "linux/arm64" }, Ct);
        Assert.Equal(("arm.img.gz", arm, "linux/arm64/v8"), (image.Title, image.ManifestDigest, image.Platform));
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Client().ResolveAsync(Ref("lab/multi:latest"), new ResolveOptions { Platform = "linux/riscv64" }, Ct));
        Assert.Equal(ErrorCode.PlatformAmbiguous, ex.Code);
    }

    private void ServeTokens(Func<int, (int Status, string Body)>? token = null, Func<HttpListenerContext, string?, bool>? blobs = null)
    {
        int tokens = 0;
        _reg.Intercept = ctx =>
        {
            string path = ctx.Request.Url!.AbsolutePath;
            if (path == "/token")
            {
                int n = Interlocked.Increment(ref tokens);
                var (status, body) = token?.Invoke(n) ?? (200, $"{{\"token\":\"tok{n}\",\"expires_in\":300}}");
                ctx.Response.ContentType = "application/json";
                FakeRegistry.WriteBody(ctx, Encoding.UTF8.GetBytes(body), status);
                return true;
            }

            string? auth = ctx.Request.Headers["Authorization"];
            if (auth is null || !auth.StartsWith("Bearer tok", StringComparison.Ordinal))
            {
                ctx.Response.Headers["WWW-Authenticate"] =
                    $"Bearer realm=\"http://127.0.0.1:{_reg.Port}/token\",service=\"fake\",scope=\"repository:lab/a:pull,push\"";
                FakeRegistry.WriteStatus(ctx, 401, "UNAUTHORIZED");
                return true;
            }

            return blobs?.Invoke(ctx, auth) ?? false;
        };
    }

    [Fact]
    public async Task Bearer_tokens_are_fetched_on_challenge_cached_and_refetched_once_on_a_401_mid_flight()
    {
        var img = Data(50_000);
        _reg.AddImage("lab/a", "v1", (Nosi, img, "a.img.gz"));
        bool expired = false;
        ServeTokens(blobs: (ctx, auth) =>
        {
            // The first token "expires" as soon as the blob is asked for.
            if (ctx.Request.Url!.AbsolutePath.Contains("/blobs/") && auth == "Bearer tok1")
            {
                expired = true;
                ctx.Response.Headers["WWW-Authenticate"] = $"Bearer realm=\"http://127.0.0.1:{_reg.Port}/token\",service=\"fake\",scope=\"repository:lab/a:pull\"";
                FakeRegistry.WriteStatus(ctx, 401, "UNAUTHORIZED");
                return true;
            }

            return false;
        });
        var client = Client();
        var image = await client.ResolveAsync(Ref("lab/a:v1"), new ResolveOptions(), Ct);
        await using var stream = await client.OpenBlobAsync(image, Ct);
        Assert.Equal(img, await ReadAllAsync(stream));
        Assert.True(expired);
        var tokenRequests = _reg.Requests.Where(r => r.Path == "/token").ToList();
        Assert.Equal(2, tokenRequests.Count);
        Assert.All(tokenRequests, r => Assert.Null(r.Authorization));
        Assert.DoesNotContain("tok1", _sink.All);
        Assert.DoesNotContain("tok2", _sink.All);
    }

    [Fact]
    public async Task An_oversize_or_refused_token_response_fails_clearly()
    {
        _reg.AddImage("lab/a", "v1", (Nosi, Data(10), "a.img.gz"));
        ServeTokens(token: _ => (200, "{\"token\":\"" + new string('x', TokenService.MaxTokenBytes) + "\"}"));
        var big = await Assert.ThrowsAsync<OrasStagingException>(() => Client().ResolveAsync(Ref("lab/a:v1"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.RegistryProtocolError, big.Code);
        Assert.Contains("token response", big.Message);

        ServeTokens(token: _ => (401, "{}"));
        var denied = await Assert.ThrowsAsync<OrasStagingException>(() => Client().ResolveAsync(Ref("lab/a:v1"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.AuthenticationFailed, denied.Code);
    }

    [Fact]
    public async Task Redirects_resolve_relative_locations_and_keep_Authorization_on_the_registry_origin_only()
    {
        using var cdn = new FakeRegistry();
        var img = Data(20_000);
        _reg.AddImage("lab/a", "v1", (Nosi, img, "a.img.gz"));
        string digest = FakeRegistry.Digest(img);
        cdn.Blobs[digest] = img;
        ServeTokens(blobs: (ctx, _) =>
        {
            string path = ctx.Request.Url!.AbsolutePath;
            if (path.StartsWith("/v2/lab/a/blobs/", StringComparison.Ordinal))
            {
                ctx.Response.StatusCode = 307;
                ctx.Response.Headers["Location"] = "../../../../hop/" + digest; // relative, same origin
                ctx.Response.Close();
                return true;
            }

            if (path.StartsWith("/hop/", StringComparison.Ordinal))
            {
                ctx.Response.StatusCode = 307;
                ctx.Response.Headers["Location"] = $"http://127.0.0.1:{cdn.Port}/v2/cdn/blobs/{digest}?sig=SECRETSIG";
                ctx.Response.Close();
                return true;
            }

            return false;
        });
        var client = Client();
        var image = await client.ResolveAsync(Ref("lab/a:v1"), new ResolveOptions(), Ct);
        await using var stream = await client.OpenBlobAsync(image, Ct);
        Assert.Equal(img, await ReadAllAsync(stream));
        Assert.Contains(_reg.Requests, r => r.Path == "/hop/" + digest && r.Authorization is not null);
        var atCdn = Assert.Single(cdn.Requests);
        Assert.Null(atCdn.Authorization);
        Assert.DoesNotContain("SECRETSIG", _sink.All);
        Assert.Contains($"redirected to 127.0.0.1:{cdn.Port}", _sink.All);
    }

    [Fact]
    public async Task More_than_five_redirects_is_a_protocol_error()
    {
        _reg.Intercept = ctx =>
        {
            ctx.Response.StatusCode = 302;
            ctx.Response.Headers["Location"] = ctx.Request.Url!.AbsolutePath + "x";
            ctx.Response.Close();
            return true;
        };
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Client().ResolveAsync(Ref("lab/a:v1"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.RegistryProtocolError, ex.Code);
    }

    private OrasImage Blob(byte[] data, string repo = "lab/a") => new()
    {
        Registry = _reg.Host,
        Repository = repo,
        Digest = _reg.AddBlob(data),
        Size = data.Length,
        Title = "a.img.gz",
    };

    [Fact]
    public async Task Connection_cuts_mid_blob_are_resumed_with_Range_and_give_identical_bytes()
    {
        var img = Data(3_000_000);
        int cuts = 0;
        _reg.Intercept = ctx =>
        {
            if (ctx.Request.HttpMethod == "GET" && ctx.Request.Url!.AbsolutePath.Contains("/blobs/") && Interlocked.Increment(ref cuts) <= 3)
            {
                FakeRegistry.ServeBytes(ctx, img, honourRange: true, cutAfter: 700_000);
                return true;
            }

            return false;
        };
        var client = Client();
        await using var stream = await client.OpenBlobAsync(Blob(img), Ct);
        Assert.Equal(img, await ReadAllAsync(stream));
        var ranges = _reg.Requests.Where(r => r.Path.Contains("/blobs/")).Select(r => r.Range).ToList();
        // The cut aborts the connection, and a reset may drop bytes the client had not read yet: so each resume
        // starts no later than the bytes sent so far (700 000 per cut), never goes back, and there is one per cut.
        Assert.Equal(4, ranges.Count);
        Assert.Null(ranges[0]);
        long previous = 0;
        for (int i = 1; i < ranges.Count; i++)
        {
            Assert.Matches(@"^bytes=\d+-$", ranges[i]);
            long from = long.Parse(ranges[i]!["bytes=".Length..^1], System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(from, previous, 700_000L * i);
            previous = from;
        }
        Assert.Contains("Connection lost at", _sink.All);
    }

    [Fact]
    public async Task A_corrupted_byte_is_a_DigestMismatch_from_Read_never_a_clean_end()
    {
        var img = Data(2_500_000);
        var bad = (byte[])img.Clone();
        bad[1_234_567] ^= 0x40;
        var image = Blob(img);
        _reg.Intercept = ctx =>
        {
            if (ctx.Request.Url!.AbsolutePath.Contains("/blobs/"))
            {
                FakeRegistry.ServeBytes(ctx, img, honourRange: true, overrideBody: bad);
                return true;
            }

            return false;
        };
        await using var stream = await Client().OpenBlobAsync(image, Ct);
        var buffer = new byte[100_000];
        long total = 0;
        var ex = await Assert.ThrowsAsync<OrasStagingException>(async () =>
        {
            int n;
            while ((n = await stream.ReadAsync(buffer)) > 0)
            {
                total += n;
            }
        });
        Assert.Equal(ErrorCode.DigestMismatch, ex.Code);
    }

    [Fact]
    public async Task A_wrong_Content_Range_or_a_200_to_a_Range_request_restarts_cleanly()
    {
        var img = Data(1_500_000);
        int gets = 0;
        _reg.Intercept = ctx =>
        {
            if (ctx.Request.HttpMethod != "GET" || !ctx.Request.Url!.AbsolutePath.Contains("/blobs/"))
            {
                return false;
            }

            int n = Interlocked.Increment(ref gets);
            if (n == 1)
            {
                FakeRegistry.ServeBytes(ctx, img, honourRange: false, cutAfter: 600_000);
            }
            else if (n == 2)
            {
                // A 206 that starts somewhere else.
                ctx.Response.StatusCode = 206;
                ctx.Response.Headers["Content-Range"] = $"bytes 0-{img.Length - 1}/{img.Length}";
                ctx.Response.ContentLength64 = img.Length;
                ctx.Response.OutputStream.Write(img);
                ctx.Response.Close();
            }
            else if (n == 3)
            {
                FakeRegistry.ServeBytes(ctx, img, honourRange: false, cutAfter: 900_000);
            }
            else
            {
                FakeRegistry.ServeBytes(ctx, img, honourRange: false); // 200 to the Range request
            }

            return true;
        };
        string dest = Path.Combine(_dir, "a.img.gz");
        var file = await Client().DownloadBlobAsync(Blob(img), dest, false, Ct);
        Assert.Equal(img, await File.ReadAllBytesAsync(file.FullName));
        Assert.Contains("does not start at", _sink.All);
        Assert.Contains("ignored Range", _sink.All);

        // The stream has no rewind: a 200 to a Range request is skipped up to what was already delivered.
        gets = 2;
        await using var stream = await Client().OpenBlobAsync(Blob(img), Ct);
        Assert.Equal(img, await ReadAllAsync(stream));
    }

    [Fact]
    public async Task A_416_restarts_without_Range()
    {
        var img = Data(800_000);
        var image = Blob(img);
        string dest = Path.Combine(_dir, "b.bin");
        await File.WriteAllBytesAsync(dest + ".partial", img.AsSpan(0, 300_000).ToArray());
        _reg.Intercept = ctx =>
        {
            if (ctx.Request.Headers["Range"] is not null && ctx.Request.Url!.AbsolutePath.Contains("/blobs/"))
            {
                ctx.Response.StatusCode = 416;
                ctx.Response.Close();
                return true;
            }

            return false;
        };
        var file = await Client().DownloadBlobAsync(image, dest, false, Ct);
        Assert.Equal(img, await File.ReadAllBytesAsync(file.FullName));
        Assert.Contains("HTTP 416", _sink.All);
    }

    [Fact]
    public async Task Download_resumes_a_partial_skips_a_same_digest_file_and_guards_a_different_one()
    {
        var img = Data(2_000_000);
        var image = Blob(img);
        string dest = Path.Combine(_dir, "a.img.gz");
        await File.WriteAllBytesAsync(dest + ".partial", img.AsSpan(0, 1_200_000).ToArray());
        var file = await Client().DownloadBlobAsync(image, dest, false, Ct);
        Assert.Equal(img, await File.ReadAllBytesAsync(file.FullName));
        Assert.False(File.Exists(dest + ".partial"));
        // A partial without a record: its last KiB checked against the server's, then the rest from where it ends.
        Assert.Equal(new[] { "bytes=1198976-1199999", "bytes=1200000-" }, _reg.Requests.Where(r => r.Path.Contains("/blobs/")).Select(r => r.Range));

        int before = _reg.Requests.Count;
        await Client().DownloadBlobAsync(image, dest, false, Ct);
        Assert.Equal(before, _reg.Requests.Count);
        Assert.Contains("skipping", _sink.All);

        await File.WriteAllTextAsync(dest, "something else");
        var exists = await Assert.ThrowsAsync<OrasStagingException>(() => Client().DownloadBlobAsync(image, dest, false, Ct));
        Assert.Equal(ErrorCode.DestinationExists, exists.Code);
        await Client().DownloadBlobAsync(image, dest, true, Ct);
        Assert.Equal(img, await File.ReadAllBytesAsync(dest));
    }

    [Fact]
    public async Task A_partial_another_process_holds_open_is_not_writable_and_is_kept()
    {
        var img = Data(100_000);
        string dest = Path.Combine(_dir, "held.bin");
        await File.WriteAllBytesAsync(dest + ".partial", img.AsSpan(0, 10).ToArray());
        using (new FileStream(dest + ".partial", FileMode.Open, FileAccess.ReadWrite, FileShare.None))
        {
            var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Client().DownloadBlobAsync(Blob(img), dest, false, Ct));
            Assert.Equal(ErrorCode.DestinationNotWritable, ex.Code);
            Assert.Contains("another process", ex.Message);
        }

        Assert.Equal(10, new FileInfo(dest + ".partial").Length);
        Assert.False(File.Exists(dest));
    }

    [Fact]
    public async Task A_corrupt_download_leaves_nothing_behind()
    {
        var img = Data(700_000);
        var bad = (byte[])img.Clone();
        bad[5] ^= 1;
        var image = Blob(img);
        _reg.Intercept = ctx =>
        {
            if (!ctx.Request.Url!.AbsolutePath.Contains("/blobs/"))
            {
                return false;
            }

            FakeRegistry.ServeBytes(ctx, img, honourRange: true, overrideBody: bad);
            return true;
        };
        string dest = Path.Combine(_dir, "c.bin");
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Client().DownloadBlobAsync(image, dest, false, Ct));
        Assert.Equal(ErrorCode.DigestMismatch, ex.Code);
        Assert.Empty(Directory.GetFiles(_dir));
    }

    [Fact]
    public async Task Transient_statuses_are_retried_with_Retry_After_and_give_up_as_RegistryUnavailable()
    {
        _reg.AddImage("lab/a", "v1", (Nosi, Data(10), "a.img.gz"));
        int n = 0;
        _reg.Intercept = ctx =>
        {
            int i = Interlocked.Increment(ref n);
            if (i == 1)
            {
                ctx.Response.Headers["Retry-After"] = "1";
                FakeRegistry.WriteStatus(ctx, 429, "TOOMANYREQUESTS");
                return true;
            }

            if (i == 2)
            {
                FakeRegistry.WriteStatus(ctx, 503);
                return true;
            }

            return false;
        };
        var image = await Client().ResolveAsync(Ref("lab/a:v1"), new ResolveOptions(), Ct);
        Assert.Equal("a.img.gz", image.Title);
        Assert.Contains("HTTP 429", _sink.All);
        Assert.Contains("Retry-After 1 s", _sink.All);
        Assert.Contains("HTTP 503", _sink.All);

        _reg.Intercept = ctx =>
        {
            FakeRegistry.WriteStatus(ctx, 503);
            return true;
        };
        var options = Options();
        options.MaximumRetryCount = 2;
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Client(options).ResolveAsync(Ref("lab/a:v1"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.RegistryUnavailable, ex.Code);
    }

    [Fact]
    public async Task A_connection_refused_registry_is_RegistryUnavailable()
    {
        var options = Options();
        options.MaximumRetryCount = 1;
        int port;
        using (var probe = new FakeRegistry())
        {
            port = probe.Port;
        }

        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            Client(options).ResolveAsync(ImageReference.Parse($"127.0.0.1:{port}/a:b"), new ResolveOptions(), Ct));
        Assert.Equal(ErrorCode.RegistryUnavailable, ex.Code);
    }

    [Fact]
    public async Task A_stall_counts_as_a_drop_and_is_resumed()
    {
        var img = Data(400_000);
        int n = 0;
        var release = new ManualResetEventSlim();
        _reg.Intercept = ctx =>
        {
            if (ctx.Request.Url!.AbsolutePath.Contains("/blobs/") && Interlocked.Increment(ref n) == 1)
            {
                ctx.Response.ContentLength64 = img.Length;
                ctx.Response.OutputStream.Write(img, 0, 100_000);
                ctx.Response.OutputStream.Flush();
                release.Wait(TimeSpan.FromSeconds(20));
                ctx.Response.Abort();
                return true;
            }

            return false;
        };
        var options = Options();
        // Long enough that a loaded machine's ordinary pauses are not taken for the stall; the server holds the
        // stalled answer for 20 s, so the stall is still certain.
        options.StallTimeout = TimeSpan.FromSeconds(2);
        try
        {
            await using var stream = await Client(options).OpenBlobAsync(Blob(img), Ct);
            Assert.Equal(img, await ReadAllAsync(stream));
        }
        finally
        {
            release.Set();
        }

        Assert.Contains("no answer in time", _sink.All);
    }

    [Fact]
    public async Task Withcache_hit_downloads_from_the_cache_without_credentials_and_a_miss_goes_to_the_registry()
    {
        using var cache = new FakeRegistry();
        var img = Data(300_000);
        var image = new OrasImage
        {
            Registry = _reg.Host,
            Repository = "lab/a",
            Digest = FakeRegistry.Digest(img),
            Size = img.Length,
            BlobUri = new Uri($"http://{_reg.Host}/v2/lab/a/blobs/{FakeRegistry.Digest(img)}"),
        };
        Uri cacheUri = WithcacheSource.CacheUriFor($"http://127.0.0.1:{cache.Port}", image.BlobUri);
        Assert.StartsWith($"http://127.0.0.1:{cache.Port}/b/", cacheUri.AbsoluteUri);
        string key = cacheUri.Segments[2].TrimEnd('/');
        Assert.DoesNotContain("=", key);
        Assert.Equal(image.BlobUri.AbsoluteUri,
            Encoding.UTF8.GetString(Convert.FromBase64String(key.Replace('-', '+').Replace('_', '/') + new string('=', (4 - (key.Length % 4)) % 4))));
        Assert.Equal(image.Digest, Uri.UnescapeDataString(cacheUri.Segments[3]));

        var agents = new System.Collections.Concurrent.ConcurrentQueue<string?>();
        cache.Intercept = ctx =>
        {
            agents.Enqueue(ctx.Request.UserAgent);
            if (ctx.Request.Url!.AbsolutePath == cacheUri.AbsolutePath)
            {
                FakeRegistry.ServeBytes(ctx, img, honourRange: true);
            }
            else
            {
                FakeRegistry.WriteStatus(ctx, 404);
            }

            return true;
        };
        var options = Options();
        options.CacheServer = $"http://127.0.0.1:{cache.Port}";
        options.Credential = new NetworkCredential("u", "SECRETPW");
        // The cache key is the blob's URL as the client asks for it; nothing has been asked of this registry yet,
        // so without -PlainHttp its scheme would still be undecided (https first).
        options.PlainHttp = true;
        await using (var stream = await Client(options).OpenBlobAsync(image, Ct))
        {
            Assert.Equal(img, await ReadAllAsync(stream));
        }

        Assert.DoesNotContain(_reg.Requests, r => r.Path.Contains("/blobs/"));
        Assert.All(cache.Requests, r => Assert.Null(r.Authorization));
        Assert.Equal(new[] { "HEAD", "GET" }, cache.Requests.Select(r => r.Method));
        Assert.All(agents, a => Assert.StartsWith("OrasStaging/", a));
        Assert.Contains("Cache hit", _sink.All);

        // Miss: a different blob is not in the cache.
        var other = Data(1000, 3);
        var otherImage = new OrasImage { Registry = _reg.Host, Repository = "lab/a", Digest = _reg.AddBlob(other), Size = other.Length };
        await using (var stream = await Client(options).OpenBlobAsync(otherImage, Ct))
        {
            Assert.Equal(other, await ReadAllAsync(stream));
        }

        Assert.Contains("Cache miss", _sink.All);
        Assert.Single(_reg.Requests, r => r.Path.Contains("/blobs/"));
    }
}
