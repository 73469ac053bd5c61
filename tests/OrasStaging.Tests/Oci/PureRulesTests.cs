using System.Net.Http.Headers;
using System.Text;
using OrasStaging.Oci;
using OrasStaging.Oci.Auth;

namespace OrasStaging.Tests.Oci;

public class ChallengeTests
{
    [Fact]
    public void Parses_a_bearer_challenge_with_commas_inside_the_quoted_scope()
    {
        var c = Assert.Single(AuthChallenge.Parse(new[]
        {
            "Bearer realm=\"https://ghcr.io/token\",service=\"ghcr.io\",scope=\"repository:safl/nosi/debian:pull,push\"",
        }));
        Assert.True(c.IsBearer);
        Assert.Equal("https://ghcr.io/token", c["realm"]);
        Assert.Equal("ghcr.io", c["service"]);
        Assert.Equal("repository:safl/nosi/debian:pull,push", c["scope"]);
    }

    [Fact]
    public void Parses_several_challenges_in_one_header_and_across_headers()
    {
        var list = AuthChallenge.Parse(new[]
        {
            "Basic realm=\"Registry Realm\", Bearer realm=\"https://auth.docker.io/token\", service=\"registry.docker.io\", scope=\"repository:a:pull repository:b:pull\"",
            "Negotiate",
            "bearer realm=unquoted,error=\"insufficient_scope\"",
        });
        Assert.Equal(new[] { "Basic", "Bearer", "Negotiate", "bearer" }, list.Select(c => c.Scheme));
        Assert.Equal("Registry Realm", list[0]["realm"]);
        Assert.Equal("repository:a:pull repository:b:pull", list[1]["scope"]);
        Assert.Empty(list[2].Parameters);
        Assert.Equal("unquoted", list[3]["realm"]);
        Assert.Equal("insufficient_scope", list[3]["ERROR"]);
        Assert.True(list[3].IsBearer);
    }

    [Fact]
    public void Unescapes_backslashes_in_quoted_strings()
    {
        var c = Assert.Single(AuthChallenge.Parse(new[] { "Bearer realm=\"https://x/t\",scope=\"a\\\"b,c\"" }));
        Assert.Equal("a\"b,c", c["scope"]);
    }
}

public class SelectionTests
{
    private static OrasDescriptor L(string mediaType, long size, string? title = null) =>
        new() { MediaType = mediaType, Digest = "sha256:" + new string((char)('a' + (size % 6)), 64), Size = size, Title = title };

    [Fact]
    public void Prefers_nosi_layers_and_drops_sidecars_signatures_and_sboms()
    {
        var layers = new[]
        {
            L("application/vnd.nosi.disk-image.layer.v1+gzip", 100, "debian.img.gz"),
            L("text/plain", 65, "debian.img.gz.sha256"),
            L("application/zip", 5000, "report.zip"),
            L("application/vnd.nosi.metadata.v1+json", 9000, "metadata.json"),
            L("application/spdx+json", 99999, "sbom.spdx"),
            L("application/vnd.dev.cosign.simplesigning.v1+json", 99999, "sig"),
        };
        Assert.Equal("debian.img.gz", Selection.ChooseLayer(layers, null, null, "r").Title);
    }

    [Fact]
    public void A_container_image_takes_its_topmost_layer_whatever_its_size()
    {
        var layers = new[]
        {
            L("application/vnd.docker.image.rootfs.diff.tar.gzip", 9000),
            L("application/vnd.docker.image.rootfs.diff.tar.gzip", 300),
        };
        Assert.Equal(300, Selection.ChooseLayer(layers, null, null, "r").Size);
        var oci = new[] { L("application/vnd.oci.image.layer.v1.tar+zstd", 500), L("application/vnd.oci.image.layer.v1.tar", 20) };
        Assert.Equal(20, Selection.ChooseLayer(oci, null, null, "r").Size);
    }

    [Fact]
    public void Without_nosi_layers_takes_the_largest_non_sidecar()
    {
        var layers = new[]
        {
            L("application/octet-stream", 10, "a.qcow2"),
            L("application/octet-stream", 30, "b.raw"),
            L("application/octet-stream", 50, "b.raw.sig"),
            L("application/vnd.oci.empty.v1+json", 70),
            L("application/vnd.in-toto+json", 80, "att"),
        };
        Assert.Equal("b.raw", Selection.ChooseLayer(layers, null, null, "r").Title);
    }

    [Fact]
    public void LayerTitle_and_LayerMediaType_wildcards_override()
    {
        var layers = new[] { L("application/vnd.nosi.disk-image.layer.v1+gzip", 100, "x.img.gz"), L("text/plain", 65, "x.img.gz.sha256") };
        Assert.Equal("x.img.gz.sha256", Selection.ChooseLayer(layers, "*.SHA256", null, "r").Title);
        Assert.Equal("x.img.gz.sha256", Selection.ChooseLayer(layers, null, "text/*", "r").Title);
        var ex = Assert.Throws<OrasStagingException>(() => Selection.ChooseLayer(layers, "nothing*", null, "r"));
        Assert.Equal(ErrorCode.NoImageLayer, ex.Code);
    }

    [Fact]
    public void A_helm_chart_has_no_eligible_layer()
    {
        var layers = new[] { L("application/vnd.cncf.helm.chart.content.v1.tar+gzip", 100, "chart.tgz") };
        var ex = Assert.Throws<OrasStagingException>(() => Selection.ChooseLayer(layers, null, null, "oras://h/chart:1"));
        Assert.Equal(ErrorCode.NoImageLayer, ex.Code);
        Assert.Contains("chart.tgz", ex.Message);
    }

    private static readonly PlatformEntry Amd = new("sha256:" + new string('1', 64), "m", 1, "linux", "amd64", null);
    private static readonly PlatformEntry Arm = new("sha256:" + new string('2', 64), "m", 1, "linux", "arm64", "v8");

    [Fact]
    public void Platform_choice_follows_the_rules()
    {
        Assert.Equal(Arm, Selection.ChoosePlatform(new[] { Amd, Arm }, "linux/arm64", "linux", "amd64", "r"));
        Assert.Equal(Arm, Selection.ChoosePlatform(new[] { Amd, Arm }, "linux/arm64/v8", "linux", "amd64", "r"));
        Assert.Equal(Arm, Selection.ChoosePlatform(new[] { Arm }, null, "linux", "amd64", "r"));
        Assert.Equal(Amd, Selection.ChoosePlatform(new[] { Arm, Amd }, null, "linux", "amd64", "r"));
        var ex = Assert.Throws<OrasStagingException>(() => Selection.ChoosePlatform(new[] { Amd, Arm }, null, "linux", "s390x", "r"));
        Assert.Equal(ErrorCode.PlatformAmbiguous, ex.Code);
        Assert.Contains("linux/amd64", ex.Message);
        Assert.Contains("linux/arm64/v8", ex.Message);
        Assert.Equal(ErrorCode.PlatformAmbiguous,
            Assert.Throws<OrasStagingException>(() => Selection.ChoosePlatform(new[] { Amd }, "windows/amd64", "linux", "amd64", "r")).Code);
        Assert.Equal(ErrorCode.InvalidArgument,
            Assert.Throws<OrasStagingException>(() => Selection.ChoosePlatform(new[] { Amd }, "amd64", "linux", "amd64", "r")).Code);
    }

    [Theory]
    [InlineData("debian.img.gz", "debian.img.gz")]
    [InlineData("../../x", null)]
    [InlineData("a/b", null)]
    [InlineData("a\\b", null)]
    [InlineData("C:evil", null)]
    [InlineData("..", null)]
    [InlineData("x..y", null)]
    [InlineData("a|b", null)]
    [InlineData("a\u0001b", null)]
    [InlineData(" lead", null)]
    [InlineData("nul.img.gz", null)]
    [InlineData("COM1", null)]
    [InlineData("console.img", "console.img")]
    public void Safe_file_names_from_titles(string title, string? expected) =>
        Assert.Equal(expected, Selection.SafeFileName(title));
}

public class TokenAndRetryTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 26, 12, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Token_expiry_counts_from_issued_at_with_a_margin()
    {
        Assert.Equal(Now.AddSeconds(60 - 6), TokenCache.ComputeExpiry(Now, null, null));
        Assert.Equal(Now.AddSeconds(300 - 10), TokenCache.ComputeExpiry(Now, 300, null));
        Assert.Equal(Now.AddSeconds(-100 + 300 - 10), TokenCache.ComputeExpiry(Now, 300, Now.AddSeconds(-100)));
        // issued_at in the future (clock skew) counts from now.
        Assert.Equal(Now.AddSeconds(300 - 10), TokenCache.ComputeExpiry(Now, 300, Now.AddSeconds(100)));
        Assert.Equal(Now.AddSeconds(5 - 0.5), TokenCache.ComputeExpiry(Now, 5, null));
    }

    [Fact]
    public void The_cache_forgets_a_token_at_its_expiry()
    {
        var clock = Now;
        var cache = new TokenCache(() => clock);
        cache.Set("k", "t", 60, null);
        Assert.Equal("t", cache.Get("k"));
        clock = Now.AddSeconds(53);
        Assert.Equal("t", cache.Get("k"));
        clock = Now.AddSeconds(55);
        Assert.Null(cache.Get("k"));
    }

    [Fact]
    public void Retry_After_as_seconds_or_http_date_capped()
    {
        Assert.Equal(TimeSpan.FromSeconds(3), RetryAfter("3"));
        Assert.Equal(RetryPolicy.RetryAfterCap, RetryAfter("100000"));
        Assert.Equal(TimeSpan.FromSeconds(7), RetryAfter(Now.AddSeconds(7).ToString("r")));
        Assert.Equal(TimeSpan.Zero, RetryAfter(Now.AddSeconds(-7).ToString("r")));
        Assert.Null(RetryAfter("soon"));
        Assert.Null(RetryAfter(null));
        Assert.Equal(TimeSpan.FromSeconds(2), RetryPolicy.ParseRetryAfter(RetryConditionHeaderValue.Parse("2"), Now));
        Assert.Equal(TimeSpan.FromSeconds(9), RetryPolicy.ParseRetryAfter(RetryConditionHeaderValue.Parse(Now.AddSeconds(9).ToString("r")), Now));
    }

    /// <summary>The header as the transport sees it: parsed by HttpClient from the raw response text.</summary>
    private static TimeSpan? RetryAfter(string? value)
    {
        using var response = new HttpResponseMessage(System.Net.HttpStatusCode.TooManyRequests);
        if (value is not null)
        {
            response.Headers.TryAddWithoutValidation("Retry-After", value);
        }

        return RetryPolicy.ParseRetryAfter(response.Headers.RetryAfter, Now);
    }

    [Fact]
    public void Backoff_grows_exponentially_with_bounded_jitter()
    {
        var r = new Random(1);
        for (int attempt = 0; attempt < 4; attempt++)
        {
            var d = RetryPolicy.Backoff(attempt, 1, r).TotalSeconds;
            Assert.InRange(d, Math.Pow(2, attempt) * 0.75, Math.Pow(2, attempt) * 1.25);
        }

        Assert.True(RetryPolicy.Backoff(20, 1, r) <= RetryPolicy.BackoffCap * 1.25);
    }

    [Fact]
    public void Token_responses_accept_token_or_access_token()
    {
        var a = TokenService.ParseTokenResponse(Encoding.UTF8.GetBytes("{\"token\":\"T1\",\"expires_in\":300,\"issued_at\":\"2026-11-26T12:00:00Z\"}"), "h");
        Assert.Equal(("T1", (long?)300, (DateTimeOffset?)Now), a);
        var b = TokenService.ParseTokenResponse(Encoding.UTF8.GetBytes("{\"access_token\":\"T2\"}"), "h");
        Assert.Equal("T2", b.Token);
        Assert.Null(b.ExpiresIn);
        Assert.Equal(ErrorCode.RegistryProtocolError,
            Assert.Throws<OrasStagingException>(() => TokenService.ParseTokenResponse(Encoding.UTF8.GetBytes("{}"), "h")).Code);
    }

    [Theory]
    [InlineData("https://ghcr.io/token", "ghcr.io", true)]
    [InlineData("https://auth.docker.io/token", "registry-1.docker.io", true)]
    [InlineData("http://127.0.0.1:9999/token", "127.0.0.1:5000", true)]
    [InlineData("http://ghcr.io/token", "ghcr.io", false)]
    [InlineData("https://evil.example/token", "ghcr.io", false)]
    [InlineData("https://user:pw@ghcr.io/token", "ghcr.io", false)]
    [InlineData("https://auth.docker.io/token", "ghcr.io", false)]
    public void Realm_validation(string realm, string registry, bool ok)
    {
        var ex = Record.Exception(() => RealmPolicy.ValidateRealm(new Uri(realm), registry));
        if (ok)
        {
            Assert.Null(ex);
        }
        else
        {
            Assert.Equal(ErrorCode.AuthenticationFailed, Assert.IsType<OrasStagingException>(ex).Code);
            Assert.DoesNotContain("user:pw", ex.Message);
        }
    }
}

public class RedactionTests
{
    [Fact]
    public void Signed_urls_tokens_and_authorization_values_are_masked()
    {
        string text = "GET https://user:pw@pkg-containers.githubusercontent.com/ghcr1/blobs/sha256:ab?sig=SECRET&se=2026 failed; " +
            "Authorization: Bearer eyJhbGciOi.SECRET2 and Basic dXNlcjpTRUNSRVQz {\"token\":\"SECRET4\",\"access_token\": \"SECRET5\"} password=SECRET6";
        string red = Redaction.Text(text);
        foreach (string secret in new[] { "SECRET", "SECRET2", "dXNlcjpTRUNSRVQz", "SECRET4", "SECRET5", "SECRET6", "user:pw", "sig=" })
        {
            Assert.DoesNotContain(secret, red);
        }

        Assert.Contains("https://pkg-containers.githubusercontent.com/ghcr1/blobs/sha256:ab?…", red);
        Assert.Equal("https://cdn.example/x?…", Redaction.Url(new Uri("https://u:p@cdn.example/x?X-Amz-Signature=abc")));
    }
}

public class OverlappedFileWriterTests
{
    [Fact]
    public async Task A_failing_disk_surfaces_on_the_producer_instead_of_blocking_it()
    {
        string path = Path.GetTempFileName();
        try
        {
            await using var readOnly = new FileStream(path, FileMode.Open, FileAccess.Read);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            var writer = new OverlappedFileWriter(readOnly, timeout.Token);
            var ex = await Record.ExceptionAsync(async () =>
            {
                for (int i = 0; i < 100; i++)
                {
                    await writer.WriteAsync(System.Buffers.ArrayPool<byte>.Shared.Rent(1024), 1024, timeout.Token);
                }

                await writer.DrainAsync();
            });
            // The stream's own refusal (NotSupported from a FileStream, UnauthorizedAccess from its handle), not a hang.
            Assert.True(ex is NotSupportedException or UnauthorizedAccessException, $"got {ex?.GetType().Name ?? "nothing"}");
            Assert.False(timeout.IsCancellationRequested);
            await writer.DisposeAsync();
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task Rewind_empties_the_file_after_pending_writes()
    {
        string path = Path.GetTempFileName();
        try
        {
            await using (var file = new FileStream(path, FileMode.Open, FileAccess.ReadWrite))
            {
                var writer = new OverlappedFileWriter(file, CancellationToken.None);
                byte[] a = System.Buffers.ArrayPool<byte>.Shared.Rent(10);
                a.AsSpan(0, 3).Fill((byte)'a');
                await writer.WriteAsync(a, 3, default);
                await writer.RewindAsync();
                byte[] b = System.Buffers.ArrayPool<byte>.Shared.Rent(10);
                b.AsSpan(0, 2).Fill((byte)'b');
                await writer.WriteAsync(b, 2, default);
                await writer.DrainAsync();
                await writer.DisposeAsync();
            }

            Assert.Equal("bb", await File.ReadAllTextAsync(path));
        }
        finally
        {
            File.Delete(path);
        }
    }
}
