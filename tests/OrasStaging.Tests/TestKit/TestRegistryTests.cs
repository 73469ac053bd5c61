using System.Net;
using System.Security.Cryptography;
using OrasStaging.TestKit;

namespace OrasStaging.Tests.TestKit;

/// <summary>The TestKit used as a library (as xunit tests of the core can): start, push, pull, fault, stop.</summary>
public class TestRegistryTests
{
    [Fact]
    public async Task PushesThroughTheLibraryAndInjectsFaultsInProcess()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        var image = Path.Combine(Path.GetTempPath(), $"lib-{Guid.NewGuid():n}.img");
        string dataDir;
        try
        {
            DiskImageGenerator.WriteFile(image, 1024 * 1024 + 5, 3);
            await using (var registry = await TestRegistry.StartAsync(new TestRegistryOptions { Auth = RegistryAuth.Token }, cts.Token))
            {
                dataDir = registry.Info.DataDir;
                var pushed = await ArtifactPusher.PushAsync(new PushOptions
                {
                    Registry = registry.Info.Proxy,
                    Repository = "lab/debian",
                    ImagePath = image,
                    Username = registry.Info.Username,
                    Password = registry.Info.Password,
                }, cts.Token);
                Assert.Equal(ArtifactPusher.LayerMediaTypePrefix + "+gzip", pushed.MediaType);

                using var client = new RegistryClient(registry.Info.Proxy, tls: false, caCertPath: null, username: null, password: null);
                registry.Faults.Add(new FaultSpec { Kind = "ServiceUnavailable", Times = 1 });
                using (var first = await client.SendAsync(() => new HttpRequestMessage(HttpMethod.Get, new Uri(client.BaseUri, $"/v2/lab/debian/blobs/{pushed.Digest}")), "repository:lab/debian:pull", cts.Token))
                {
                    // The anonymous token was fetched on the 401 challenge; the 503 came on the retry.
                    Assert.Equal(HttpStatusCode.ServiceUnavailable, first.StatusCode);
                }
                using var second = await client.SendAsync(() => new HttpRequestMessage(HttpMethod.Get, new Uri(client.BaseUri, $"/v2/lab/debian/blobs/{pushed.Digest}")), "repository:lab/debian:pull", cts.Token);
                Assert.Equal(HttpStatusCode.OK, second.StatusCode);
                var body = await second.Content.ReadAsByteArrayAsync(cts.Token);
                Assert.Equal(pushed.Digest, "sha256:" + Convert.ToHexString(SHA256.HashData(body)).ToLowerInvariant());

                var stats = registry.Stats.Snapshot();
                Assert.Equal(1, stats.FaultsFired["serviceUnavailable"]);
                Assert.True(stats.TokenRequests >= 2);
                Assert.Equal(body.Length, stats.BlobBytesSent);
            }
            Assert.False(Directory.Exists(dataDir));
        }
        finally
        {
            File.Delete(image);
        }
    }

    [Fact]
    public void ParsesChallengesWithQuotedCommas()
    {
        var p = RegistryClient.ParseChallenge("realm=\"https://a/token\",service=\"reg\",scope=\"repository:x/y:pull,push\"");
        Assert.Equal("https://a/token", p["realm"]);
        Assert.Equal("reg", p["service"]);
        Assert.Equal("repository:x/y:pull,push", p["scope"]);
    }

    [Theory]
    [InlineData("bytes=0-9", 100, 0, 9, true)]
    [InlineData("bytes=90-", 100, 90, 99, true)]
    [InlineData("bytes=-10", 100, 90, 99, true)]
    [InlineData("bytes=95-200", 100, 95, 99, true)]
    [InlineData("bytes=100-", 100, 0, 0, false)]
    [InlineData("bytes=0-1,5-6", 100, 0, 0, false)]
    public void ParsesSingleRanges(string header, long total, long start, long end, bool ok)
    {
        Assert.Equal(ok, FaultProxy.TryParseRange(header, total, out var s, out var e));
        if (ok)
        {
            Assert.Equal(start, s);
            Assert.Equal(end, e);
        }
    }
}
