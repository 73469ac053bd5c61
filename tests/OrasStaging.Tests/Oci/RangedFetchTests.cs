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

    private async Task<byte[]> FetchAll(int connections = 4, NetworkCredential? credential = null)
    {
        var client = new RegistryClient(new RegistryOptions
        {
            Credential = credential,
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
    private void Serve(HttpListenerContext ctx, bool honourRange = true, int? cutAfter = null, byte[]? body = null, int slowerBy = 0)
    {
        int now = Interlocked.Increment(ref _inFlight);
        InterlockedMax(ref _maxInFlight, now);
        try
        {
            // 60 ms a range: a link of under 70 MB/s, slow enough for the reader to open more connections at once.
            // A slower link waits inside the count, so a request being answered is a request in flight.
            Thread.Sleep(60 + slowerBy);
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
        // 300 ms a range: at 60 ms, a full suite on a loaded machine once saw one body at a time (the connection
        // opened late, after the last range was claimed).
        _reg.Intercept = ctx =>
        {
            if (!IsBlobGet(ctx)) return false;
            Serve(ctx, slowerBy: 240);
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
    public async Task A_reader_slower_than_the_link_keeps_one_connection()
    {
        // The server answers at once and the writer the ranges go to is the bound (80 ms per piece of at most 1 MiB),
        // so the reader never waits on the network: more connections would only cost CPU.
        _reg.Intercept = ctx =>
        {
            if (!IsBlobGet(ctx)) return false;
            int now = Interlocked.Increment(ref _inFlight);
            InterlockedMax(ref _maxInFlight, now);
            try { FakeRegistry.ServeBytes(ctx, _img, true, null, null); }
            finally { Interlocked.Decrement(ref _inFlight); }
            return true;
        };
        var options = new RegistryOptions { PlainHttp = true, RetryIntervalSec = 0, StallTimeout = TimeSpan.FromSeconds(10), ConnectionLimit = 4 };
        var transport = new RegistryTransport(options, _sink);
        var image = Blob();
        var fetch = new RangedFetch(transport, _sink, image, new Uri($"http://{_reg.Host}/v2/lab/a/blobs/{image.Digest}"), "test");
        using var ms = new MemoryStream();
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        long end = await fetch.RunAsync(0, hash, async (buffer, count, token) =>
        {
            ms.Write(buffer, 0, count);
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            await Task.Delay(80, token);
        }, () => { }, Ct);

        Assert.Equal(Size, end);
        Assert.Equal(_img, ms.ToArray());
        Assert.Equal(6, BlobRanges().Count);
        // One worker asks for the next range as soon as it has read a body, before the server's handler has returned,
        // so two handlers can overlap for a moment; a second connection is what the Verbose line would name.
        Assert.True(_maxInFlight <= 2, $"{_maxInFlight} bodies at once");
        Assert.DoesNotContain(_sink.Verbose, m => m.Contains("Opened connection", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_resumed_fetch_opens_every_connection_once_the_probe_holds_though_its_reader_is_busy()
    {
        // A resumed install's reader decodes its kept part first, so it is slow here (80 ms a piece) and never waits on
        // the network; the rest must still come in over every connection meanwhile, not one. Half a second a range, so
        // the connections opened overlap even when a loaded test host is slow to start their tasks (at 60 ms, 1 full CI
        // run in 1 saw one body at a time), and 150 ms a piece for the reader, so it stays the slower.
        _reg.Intercept = ctx =>
        {
            if (!IsBlobGet(ctx)) return false;
            Serve(ctx, slowerBy: 440);
            return true;
        };
        var options = new RegistryOptions { PlainHttp = true, RetryIntervalSec = 0, StallTimeout = TimeSpan.FromSeconds(10), ConnectionLimit = 3 };
        var transport = new RegistryTransport(options, _sink);
        var image = Blob();
        var fetch = new RangedFetch(transport, _sink, image, new Uri($"http://{_reg.Host}/v2/lab/a/blobs/{image.Digest}"), "test");
        const int start = 1 << 20;
        using var ms = new MemoryStream();
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        hash.AppendData(_img, 0, start);
        long end = await fetch.RunAsync(start, hash, async (buffer, count, token) =>
        {
            ms.Write(buffer, 0, count);
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
            await Task.Delay(150, token);
        }, () => { }, Ct);

        Assert.Equal(Size, end);
        Assert.Equal(_img.AsSpan(start).ToArray(), ms.ToArray());
        Assert.Equal(Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(_img)), Convert.ToHexString(hash.GetHashAndReset()));
        Assert.True(_maxInFlight >= 2, $"at most {_maxInFlight} bodies at once");
        Assert.Contains(_sink.Verbose, m => m.Contains("Opened 3 connections for the rest", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_reader_waiting_on_a_slow_link_opens_connections_up_to_the_limit()
    {
        _reg.Intercept = ctx =>
        {
            if (!IsBlobGet(ctx)) return false;
            Serve(ctx, slowerBy: 400); // 460 ms a range: at 230 ms, a loaded full suite once saw one body at a time.
            return true;
        };
        Assert.Equal(_img, await FetchAll(connections: 3));
        Assert.True(_maxInFlight > 1, $"at most {_maxInFlight} bodies at once");
        Assert.True(_maxInFlight <= 3, $"{_maxInFlight} bodies at once over a limit of 3");
        Assert.Contains(_sink.Verbose, m => m.Contains("Opened connection 2 of up to 3", StringComparison.Ordinal));
    }

    [Fact]
    public void Growth_is_judged_on_the_share_of_time_spent_waiting_and_on_a_fast_link_only_once_the_stages_after_it_are_full()
    {
        long ms = System.Diagnostics.Stopwatch.Frequency / 1000;
        const long MiB = 1 << 20;
        var g = new ConnectionGrowth();
        Assert.False(g.Delivered(1000 * ms, 4 * MiB));         // starts the clock
        g.Waited(60 * ms);
        Assert.False(g.Delivered(1100 * ms, 4 * MiB));
        Assert.True(g.Delivered(1200 * ms, 4 * MiB));          // 60 ms of 200 waiting on a 42 MB/s link: grow
        g.Waited(30 * ms);
        g.Delivered(1300 * ms, 4 * MiB);
        Assert.False(g.Delivered(1600 * ms, 4 * MiB));         // 30 of 400: the reader is the bound
        g.Waited(10 * ms);
        g.Delivered(1610 * ms, 4 * MiB);
        Assert.False(g.Delivered(1620 * ms, 4 * MiB));         // half the time, but 10 ms is noise

        var fast = new ConnectionGrowth();
        fast.Delivered(0, 4 * MiB);
        long t = 0;
        for (int i = 0; i < 3; i++)
        {
            // 8 MiB in 40 ms (210 MB/s), half of it waiting: the stages after the reader are still filling.
            fast.Waited(20 * ms);
            fast.Delivered(t += 20 * ms, 4 * MiB);
            Assert.False(fast.Delivered(t += 20 * ms, 4 * MiB));
        }

        fast.Waited(20 * ms);
        fast.Delivered(t += 20 * ms, 4 * MiB);
        Assert.True(fast.Delivered(t += 20 * ms, 4 * MiB));    // 32 MiB in and still waiting: the link is the bound
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

    [Theory]
    [InlineData(403)]
    [InlineData(401)]
    public async Task A_CDN_URL_is_kept_while_it_works_sent_no_Authorization_and_resolved_again_when_it_expires(int expired)
    {
        using var cdn = new FakeRegistry();
        string basic = "Basic " + Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes("u:pw"));
        int signature = 0;
        int cdnServed = 0;
        _reg.Intercept = ctx =>
        {
            if (!IsBlobGet(ctx)) return false;
            if (ctx.Request.Headers["Authorization"] != basic)
            {
                // The registry wants credentials, so every request to it carries them: the CDN must never see them.
                ctx.Response.Headers["WWW-Authenticate"] = "Basic realm=\"fake\"";
                FakeRegistry.WriteStatus(ctx, 401, "UNAUTHORIZED");
                return true;
            }

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
                FakeRegistry.WriteStatus(ctx, expired, "DENIED");
                return true;
            }

            Serve(ctx);
            return true;
        };
        Assert.Equal(_img, await FetchAll(credential: new NetworkCredential("u", "pw")));
        var signed = _reg.Requests.Where(r => r.Path.Contains("/blobs/") && r.Authorization == basic).ToList();
        Assert.InRange(signed.Count, 2, 5);  // once, then again by each worker that met the expired signature
        Assert.All(cdn.Requests, r => Assert.Null(r.Authorization));
        Assert.Contains($"refused the kept URL (HTTP {expired})", _sink.All);
        Assert.True(cdn.Requests.Count(r => r.Range is not null) >= 6);
    }

    [Fact]
    public async Task Each_range_follows_its_own_redirect_on_the_registry_and_keeps_its_closed_range()
    {
        _reg.Intercept = ctx =>
        {
            string path = ctx.Request.Url!.AbsolutePath;
            if (IsBlobGet(ctx))
            {
                // Same origin: not a CDN URL to keep, so every range is asked of the blob URL and redirected.
                ctx.Response.StatusCode = 307;
                ctx.Response.Headers["Location"] = $"/storage/{Guid.NewGuid():n}";
                ctx.Response.Close();
                return true;
            }

            if (path.StartsWith("/storage/", StringComparison.Ordinal))
            {
                Serve(ctx);
                return true;
            }

            return false;
        };
        Assert.Equal(_img, await FetchAll());
        Assert.Equal(6, BlobRanges().Count);
        var stored = _reg.Requests.Where(r => r.Path.StartsWith("/storage/", StringComparison.Ordinal)).Select(r => r.Range).ToList();
        Assert.Equal(BlobRanges().OrderBy(r => r), stored.OrderBy(r => r));
        Assert.All(stored, r => Assert.Matches(@"^bytes=\d+-\d+$", r));
    }

    [Fact]
    public async Task Retry_After_holds_every_connection_not_only_the_range_that_got_it()
    {
        string refusedRange = $"bytes={RangedFetch.ChunkSize}-{(2 * RangedFetch.ChunkSize) - 1}";
        string lastRange = $"bytes={5 * RangedFetch.ChunkSize}-{Size - 1}";
        long refusedAt = 0;
        var arrivals = new System.Collections.Concurrent.ConcurrentQueue<(string Range, long Ticks)>();
        _reg.Intercept = ctx =>
        {
            if (!IsBlobGet(ctx)) return false;
            string range = ctx.Request.Headers["Range"]!;
            arrivals.Enqueue((range, DateTime.UtcNow.Ticks));
            if (range == refusedRange && Interlocked.CompareExchange(ref refusedAt, DateTime.UtcNow.Ticks, 0) == 0)
            {
                ctx.Response.Headers["Retry-After"] = "2";
                FakeRegistry.WriteStatus(ctx, 503, "UNAVAILABLE");
                return true;
            }

            if (!range.StartsWith("bytes=0-", StringComparison.Ordinal))
            {
                // The ranges fetched beside the refused one finish well inside its Retry-After.
                Thread.Sleep(300);
            }

            Serve(ctx);
            return true;
        };
        Assert.Equal(_img, await FetchAll());
        Assert.NotEqual(0, refusedAt);
        // Asked only once the other ranges were done: by a worker that was not told to wait, unless the pause is shared.
        var later = arrivals.Where(a => a.Range == lastRange || (a.Range == refusedRange && a.Ticks > refusedAt)).ToList();
        Assert.Equal(2, later.Count);
        Assert.All(later, a => Assert.True(a.Ticks - refusedAt >= TimeSpan.FromSeconds(1.9).Ticks,
            $"{a.Range} asked {TimeSpan.FromTicks(a.Ticks - refusedAt).TotalSeconds:0.00} s after a Retry-After of 2 s"));
    }

    [Theory]
    [InlineData("start")]
    [InlineData("length")]
    [InlineData("end")]
    public async Task A_first_range_answered_as_another_range_is_found_at_once_and_the_blob_comes_on_one_connection(string wrong)
    {
        _reg.Intercept = ctx =>
        {
            if (!IsBlobGet(ctx)) return false;
            string? range = ctx.Request.Headers["Range"];
            if (range == $"bytes=0-{RangedFetch.ChunkSize - 1}")
            {
                var res = ctx.Response;
                res.StatusCode = 206;
                (long from, long to, long total) = wrong switch
                {
                    "start" => (1L, RangedFetch.ChunkSize, (long)Size),
                    "length" => (0L, RangedFetch.ChunkSize - 1, Size + 7L),
                    _ => (0L, (RangedFetch.ChunkSize / 2) - 1, (long)Size),
                };
                res.Headers["Content-Range"] = $"bytes {from}-{to}/{total}";
                res.ContentLength64 = to + 1 - from;
                res.OutputStream.Write(_img, (int)from, (int)(to + 1 - from));
                res.Close();
                return true;
            }

            Serve(ctx);
            return true;
        };
        Assert.Equal(_img, await FetchAll());
        Assert.Equal(new string?[] { $"bytes=0-{RangedFetch.ChunkSize - 1}", null }, BlobRanges());
        Assert.Contains("using one connection", _sink.All);
    }
}
