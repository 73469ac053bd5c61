using System.Net;
using OrasStaging.Oci;

namespace OrasStaging.Tests.Oci;

/// <summary>Protocol corners of several connections per blob (<see cref="RangedFetch"/>) against a fake registry.</summary>
public sealed class RangedFetchTests : IDisposable
{
    private const int Size = 21 * 1024 * 1024 + 12345;  // six ranges, the last one short
    private readonly FakeRegistry _reg = new();
    private readonly RecordingSink _sink = new();
    private readonly CancellationTokenSource _timeout = new(TimeSpan.FromSeconds(90));
    private readonly byte[] _img;
    private int _inFlight;
    private int _maxInFlight;

    public RangedFetchTests()
    {
        _img = new byte[Size];
        new Random(11).NextBytes(_img);
    }

    public void Dispose()
    {
        _reg.Dispose();
        _timeout.Dispose();
    }

    private CancellationToken Ct => _timeout.Token;

    private OrasImage Blob(string? registry = null) => new()
    {
        Registry = registry ?? _reg.Host,
        Repository = "lab/a",
        Digest = _reg.AddBlob(_img),
        Size = _img.Length,
        Title = "a.img.gz",
    };

    private async Task<byte[]> FetchAll(int connections = 4)
    {
        var client = new RegistryClient(new RegistryOptions
        {
            RetryIntervalSec = 0,
            CacheServer = string.Empty,
            StallTimeout = TimeSpan.FromSeconds(10),
            DockerConfigPath = "/nonexistent/config.json",
            ConnectionLimit = connections,
        }, _sink);
        await using var stream = await client.OpenBlobAsync(Blob(), Ct);
        using var ms = new MemoryStream();
        await stream.CopyToAsync(ms, Ct);
        return ms.ToArray();
    }

    private List<string?> BlobRanges() => _reg.Requests.Where(r => r.Path.Contains("/blobs/")).Select(r => r.Range).ToList();

    /// <summary>Serves the blob honouring Range, counting how many bodies are being sent at once.</summary>
    private void Serve(HttpListenerContext ctx, bool honourRange = true, int? cutAfter = null, byte[]? body = null)
    {
        int now = Interlocked.Increment(ref _inFlight);
        InterlockedMax(ref _maxInFlight, now);
        try
        {
            Thread.Sleep(30);
            FakeRegistry.ServeBytes(ctx, _img, honourRange, cutAfter, body);
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen)
        {
        }
    }

    private static bool IsBlobGet(HttpListenerContext ctx) => ctx.Request.HttpMethod == "GET" && ctx.Request.Url!.AbsolutePath.Contains("/blobs/");

    [Fact]
    public async Task A_large_blob_comes_as_closed_ranges_over_several_connections_in_order()
    {
        _reg.Intercept = ctx =>
        {
            if (!IsBlobGet(ctx)) return false;
            Serve(ctx);
            return true;
        };
        Assert.Equal(_img, await FetchAll());
        var ranges = BlobRanges();
        Assert.Equal(6, ranges.Count);
        Assert.All(ranges, r => Assert.Matches(@"^bytes=\d+-\d+$", r));
        Assert.Equal(Enumerable.Range(0, 6).Select(i => $"bytes={i * RangedFetch.ChunkSize}-{Math.Min(Size, (i + 1) * RangedFetch.ChunkSize) - 1}"),
            ranges.OrderBy(r => long.Parse(r![6..r!.IndexOf('-')])));
        Assert.True(_maxInFlight > 1, $"at most {_maxInFlight} bodies at once");
    }

    [Fact]
    public async Task A_connection_limit_of_one_is_one_plain_GET()
    {
        Assert.Equal(_img, await FetchAll(connections: 1));
        Assert.Equal(new string?[] { null }, BlobRanges());
    }

    [Fact]
    public async Task A_server_ignoring_Range_is_found_on_the_first_range_and_the_rest_is_one_connection()
    {
        _reg.Intercept = ctx =>
        {
            if (!IsBlobGet(ctx)) return false;
            Serve(ctx, honourRange: false);
            return true;
        };
        Assert.Equal(_img, await FetchAll());
        var ranges = BlobRanges();
        Assert.Equal(2, ranges.Count);
        Assert.Equal($"bytes=0-{RangedFetch.ChunkSize - 1}", ranges[0]);
        Assert.Null(ranges[1]);
    }

    [Fact]
    public async Task A_wrong_Content_Range_later_falls_back_from_the_ordered_bytes_without_fetching_them_again()
    {
        _reg.Intercept = ctx =>
        {
            if (!IsBlobGet(ctx)) return false;
            string? range = ctx.Request.Headers["Range"];
            if (range == $"bytes={3 * RangedFetch.ChunkSize}-{(4 * RangedFetch.ChunkSize) - 1}")
            {
                // The range asked for, but of another length of blob.
                var res = ctx.Response;
                res.StatusCode = 206;
                res.Headers["Content-Range"] = $"bytes {3 * RangedFetch.ChunkSize}-{(4 * RangedFetch.ChunkSize) - 1}/{Size + 1}";
                res.ContentLength64 = RangedFetch.ChunkSize;
                res.OutputStream.Write(_img, 3 * RangedFetch.ChunkSize, RangedFetch.ChunkSize);
                res.Close();
                return true;
            }

            Serve(ctx);
            return true;
        };
        Assert.Equal(_img, await FetchAll());
        var ranges = BlobRanges();
        var open = ranges.Where(r => r is not null && r.EndsWith('-')).ToList();
        Assert.Single(open);
        long from = long.Parse(open[0]![6..^1]);
        Assert.True(from >= RangedFetch.ChunkSize && from <= 3 * RangedFetch.ChunkSize, open[0]);
        Assert.Contains("using one connection", _sink.All);
    }

    [Fact]
    public async Task A_cut_range_resumes_on_its_own_from_where_it_stopped()
    {
        int cuts = 0;
        _reg.Intercept = ctx =>
        {
            if (!IsBlobGet(ctx)) return false;
            bool cut = ctx.Request.Headers["Range"]!.EndsWith($"-{(3 * RangedFetch.ChunkSize) - 1}", StringComparison.Ordinal) && Interlocked.Increment(ref cuts) <= 2;
            Serve(ctx, cutAfter: cut ? 1_500_000 : null);
            return true;
        };
        Assert.Equal(_img, await FetchAll());
        var ranges = BlobRanges();
        Assert.Equal(8, ranges.Count);
        // The third range and its two resumes, each starting later than the one before, none from the range's start.
        var third = ranges.Where(r => r!.EndsWith($"-{(3 * RangedFetch.ChunkSize) - 1}", StringComparison.Ordinal))
            .Select(r => long.Parse(r![6..r!.IndexOf('-')])).ToList();
        Assert.Equal(3, third.Count);
        Assert.Equal(2 * RangedFetch.ChunkSize, third[0]);
        Assert.True(third[1] > third[0] && third[2] > third[1], string.Join(", ", third));
    }

    [Fact]
    public async Task A_429_with_Retry_After_pauses_the_download_and_takes_a_connection_away()
    {
        int refused = 0;
        var started = DateTime.UtcNow;
        _reg.Intercept = ctx =>
        {
            if (!IsBlobGet(ctx)) return false;
            if (!ctx.Request.Headers["Range"]!.StartsWith("bytes=0-", StringComparison.Ordinal) && Interlocked.Increment(ref refused) == 1)
            {
                ctx.Response.Headers["Retry-After"] = "1";
                FakeRegistry.WriteStatus(ctx, 429, "TOOMANYREQUESTS");
                return true;
            }

            Serve(ctx);
            return true;
        };
        Assert.Equal(_img, await FetchAll());
        Assert.True(DateTime.UtcNow - started >= TimeSpan.FromSeconds(1));
        Assert.Contains("down to 3 connections", _sink.All);
    }

    [Fact]
    public async Task A_CDN_URL_is_kept_while_it_works_sent_no_Authorization_and_resolved_again_on_403()
    {
        using var cdn = new FakeRegistry();
        int signature = 0;
        int cdnServed = 0;
        _reg.Intercept = ctx =>
        {
            if (!IsBlobGet(ctx)) return false;
            ctx.Response.StatusCode = 307;
            ctx.Response.Headers["Location"] = $"http://{cdn.Host}/cdn/blob?sig={Interlocked.Increment(ref signature)}";
            ctx.Response.Close();
            return true;
        };
        cdn.Intercept = ctx =>
        {
            // The first signature expires after three ranges.
            if (ctx.Request.Url!.Query == "?sig=1" && Interlocked.Increment(ref cdnServed) > 3)
            {
                FakeRegistry.WriteStatus(ctx, 403, "DENIED");
                return true;
            }

            Serve(ctx);
            return true;
        };
        Assert.Equal(_img, await FetchAll());
        int registryGets = BlobRanges().Count;
        Assert.InRange(registryGets, 2, 5);  // once, then again by each worker that met the expired signature
        Assert.All(cdn.Requests, r => Assert.Null(r.Authorization));
        Assert.Contains("refused the kept URL (HTTP 403)", _sink.All);
        Assert.True(cdn.Requests.Count(r => r.Range is not null) >= 6);
    }
}
