using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Primitives;

namespace OrasStaging.TestKit;

/// <summary>
/// A loopback reverse proxy in front of the registry that injects <see cref="FaultKind"/> faults into GET
/// requests, plus the "CDN" that redirected blob GETs land on and the control API that switches faults.
/// Everything else is passed through unchanged: WWW-Authenticate, Location (the registry builds upload URLs
/// from the Host header, which the proxy forwards, so pushes through the proxy work), Range, Content-Range, 206.
/// </summary>
public sealed partial class FaultProxy(Uri upstream, HttpMessageInvoker client, FaultState faults, ProxyStats stats,
    Func<string, string> challengeFor, string blobStorageRoot)
{
    private static readonly HashSet<string> HopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Trailer", "Upgrade", "Proxy-Connection",
        "Proxy-Authenticate", "Proxy-Authorization", "Host", "Expect",
    };

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { WriteIndented = false };

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, int> _cdnUses = new();

    /// <summary>Base URL of the CDN listener, e.g. http://127.0.0.1:PORT (set once it listens).</summary>
    public string CdnBaseUrl { get; set; } = "";

    [GeneratedRegex("^/v2/(?<name>.+)/manifests/(?<ref>[^/]+)$")]
    private static partial Regex ManifestPath();
    [GeneratedRegex("^/v2/(?<name>.+)/blobs/uploads(/.*)?$")]
    private static partial Regex UploadPath();
    [GeneratedRegex("^/v2/(?<name>.+)/blobs/(?<digest>[^/]+)$")]
    private static partial Regex BlobPath();
    [GeneratedRegex("^/v2/(?<name>.+)/tags/list$")]
    private static partial Regex TagsPath();
    [GeneratedRegex("^/v2/(?<name>.+)/referrers/[^/]+$")]
    private static partial Regex ReferrersPath();
    [GeneratedRegex("^/blobs/(?<name>.+)/(?<digest>sha256:[0-9a-f]{64})$")]
    private static partial Regex CdnPath();

    public static (RequestKind Kind, string Name) Classify(string path)
    {
        if (path is "/v2" or "/v2/") return (RequestKind.Ping, "");
        if (path.StartsWith("/v2/_catalog", StringComparison.Ordinal)) return (RequestKind.Catalog, "");
        Match m;
        if ((m = ManifestPath().Match(path)).Success) return (RequestKind.Manifest, m.Groups["name"].Value);
        if ((m = UploadPath().Match(path)).Success) return (RequestKind.Upload, m.Groups["name"].Value);
        if ((m = BlobPath().Match(path)).Success) return (RequestKind.Blob, m.Groups["name"].Value);
        if ((m = TagsPath().Match(path)).Success) return (RequestKind.Tags, m.Groups["name"].Value);
        if ((m = ReferrersPath().Match(path)).Success) return (RequestKind.Referrers, m.Groups["name"].Value);
        return (RequestKind.Other, "");
    }

    internal async Task HandleAsync(HttpContext ctx)
    {
        long started = RequestRecord.NowMs();
        var method = ctx.Request.Method;
        var path = ctx.Request.Path.Value ?? "/";
        var target = path + ctx.Request.QueryString.Value;
        var (kind, name) = Classify(path);
        string? range = ctx.Request.Headers.Range.Count > 0 ? ctx.Request.Headers.Range.ToString() : null;
        string authorization = ctx.Request.Headers.Authorization.ToString();
        stats.Request(kind, range);

        // The first matching fault decides. Status faults fire here; body faults (and redirects) are taken only
        // once the registry has answered with success, so the unauthenticated first request of a token dance
        // (401 from the registry) does not use them up.
        Fault? statusFault = null, deferred = null;
        foreach (var f in faults.Candidates(method, kind, path))
        {
            if (f.Kind == FaultKind.Unauthorized && f.AfterBytes is not null)
            {
                bool expiredHit = false;
                lock (f)
                {
                    if (f.ExpiredAuthorization is null)
                    {
                        deferred = f;
                    }
                    else if (f.ExpiredAuthorization == authorization && f.TryConsume())
                    {
                        expiredHit = true;
                    }
                }
                if (expiredHit)
                {
                    statusFault = f;
                    break;
                }
                if (deferred is not null) break;
                continue;
            }
            if (f.Kind == FaultKind.IgnoreRange && range is null) continue;
            if (f.Kind is FaultKind.Cut or FaultKind.Corrupt or FaultKind.Throttle or FaultKind.Redirect or FaultKind.IgnoreRange or FaultKind.Stall)
            {
                if (f.Exhausted) continue;
                deferred = f;
                break;
            }
            if (f.TryConsume())
            {
                statusFault = f;
                break;
            }
        }

        string? faultName = statusFault?.Kind.ToString();
        if (statusFault is not null) stats.FaultFired(statusFault.Kind);

        try
        {
            switch (statusFault?.Kind)
            {
                case FaultKind.TooManyRequests:
                    ctx.Response.StatusCode = 429;
                    if (statusFault.RetryAfter is int ra) ctx.Response.Headers.RetryAfter = ra.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    await WriteErrorAsync(ctx, "TOOMANYREQUESTS", "rate limit exceeded (injected by the TestKit proxy)").ConfigureAwait(false);
                    break;
                case FaultKind.ServiceUnavailable:
                    ctx.Response.StatusCode = 503;
                    if (statusFault.RetryAfter is int ra2) ctx.Response.Headers.RetryAfter = ra2.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    await WriteErrorAsync(ctx, "UNAVAILABLE", "service unavailable (injected by the TestKit proxy)").ConfigureAwait(false);
                    break;
                case FaultKind.Status:
                    ctx.Response.StatusCode = statusFault.StatusCode!.Value;
                    if (statusFault.RetryAfter is int ra3) ctx.Response.Headers.RetryAfter = ra3.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    await WriteErrorAsync(ctx, ctx.Response.StatusCode switch
                    {
                        403 => "DENIED",
                        404 => "BLOB_UNKNOWN",
                        _ => "UNKNOWN",
                    }, $"HTTP {ctx.Response.StatusCode} (injected by the TestKit proxy)").ConfigureAwait(false);
                    break;
                case FaultKind.Unauthorized:
                    ctx.Response.StatusCode = 401;
                    ctx.Response.Headers.WWWAuthenticate = challengeFor(name);
                    await WriteErrorAsync(ctx, "UNAUTHORIZED", "authentication required (token expired; injected by the TestKit proxy)").ConfigureAwait(false);
                    break;
                default:
                    faultName = await ForwardAsync(ctx, kind, deferred, name, path, authorization).ConfigureAwait(false);
                    break;
            }
        }
        finally
        {
            stats.Completed(new RequestRecord(method, path, kind, ctx.Response.StatusCode, range, authorization.Length > 0, faultName, target, started));
        }
    }

    private static async Task WriteErrorAsync(HttpContext ctx, string code, string message)
    {
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(JsonSerializer.Serialize(new { errors = new[] { new { code, message } } })).ConfigureAwait(false);
    }

    /// <summary>Passes the request to the registry; applies <paramref name="candidate"/> if the registry answers 2xx. Returns the fault that fired.</summary>
    private async Task<string?> ForwardAsync(HttpContext ctx, RequestKind kind, Fault? candidate, string name, string path, string authorization)
    {
        bool redirect = candidate?.Kind == FaultKind.Redirect;
        // A redirect answers in place of the body: ask the registry with HEAD whether it would serve it.
        var method = redirect ? HttpMethod.Head : new HttpMethod(ctx.Request.Method);
        var request = new HttpRequestMessage(method, new Uri(upstream, (ctx.Request.Path.Value ?? "/") + ctx.Request.QueryString.Value));
        bool hasBody = ctx.Request.ContentLength > 0 || ctx.Request.Headers.TransferEncoding.Count > 0;
        if (hasBody)
        {
            request.Content = new StreamContent(ctx.Request.Body, 1 << 16);
        }
        bool dropRange = candidate?.Kind == FaultKind.IgnoreRange;
        foreach (var (key, value) in ctx.Request.Headers)
        {
            if (HopByHop.Contains(key)) continue;
            if (dropRange && string.Equals(key, "Range", StringComparison.OrdinalIgnoreCase)) continue;
            if (key.StartsWith("Content-", StringComparison.OrdinalIgnoreCase))
            {
                request.Content ??= new ByteArrayContent([]);
                request.Content.Headers.TryAddWithoutValidation(key, (IEnumerable<string?>)value);
            }
            else
            {
                request.Headers.TryAddWithoutValidation(key, (IEnumerable<string?>)value);
            }
        }
        // The registry builds absolute upload Locations from Host: keep the client's view (the proxy).
        request.Headers.Host = ctx.Request.Host.Value;

        using var response = await client.SendAsync(request, ctx.RequestAborted).ConfigureAwait(false);

        Fault? fault = null;
        string? fired = null;
        if (candidate is not null && response.IsSuccessStatusCode)
        {
            if (candidate.Kind == FaultKind.Unauthorized)
            {
                lock (candidate)
                {
                    if (candidate.ExpiredAuthorization is null)
                    {
                        // This download is cut mid-body and its token "expires" with it.
                        candidate.ExpiredAuthorization = authorization;
                        fault = candidate;
                        fired = "Unauthorized(cut)";
                    }
                }
            }
            else if (candidate.TryConsume())
            {
                fault = candidate;
                fired = candidate.Kind.ToString();
                stats.FaultFired(candidate.Kind);
            }
        }

        if (fault?.Kind == FaultKind.Redirect)
        {
            var digest = path[(path.LastIndexOf('/') + 1)..];
            var signature = Convert.ToHexString(RandomNumberGenerator.GetBytes(16)).ToLowerInvariant();
            ctx.Response.StatusCode = 307;
            ctx.Response.Headers.Location = $"{CdnBaseUrl}/blobs/{name}/{digest}?X-Amz-Expires=300&X-Amz-Signature={signature}&X-TestKit-Fault={fault.Id}";
            return fired;
        }
        if (dropRange && fault is null)
        {
            // Not this request's fault after all (another took the last firing): ask again with the Range.
            response.Dispose();
            return await ForwardAsync(ctx, kind, null, name, path, authorization).ConfigureAwait(false);
        }
        if (redirect)
        {
            // Not redirected after all (the registry refused, or another request took the last one): the real GET.
            response.Dispose();
            return await ForwardAsync(ctx, kind, null, name, path, authorization).ConfigureAwait(false);
        }

        ctx.Response.StatusCode = (int)response.StatusCode;
        foreach (var (key, values) in response.Headers.Concat(response.Content.Headers))
        {
            if (HopByHop.Contains(key)) continue;
            ctx.Response.Headers[key] = new StringValues(values.ToArray());
        }
        if (HttpMethods.IsHead(ctx.Request.Method) || response.StatusCode is System.Net.HttpStatusCode.NoContent or System.Net.HttpStatusCode.NotModified)
        {
            return fired;
        }

        long bodyStart = 0;
        if (response.Content.Headers.ContentRange is { From: long from })
        {
            bodyStart = from;
        }
        bool isBlobBody = kind == RequestKind.Blob && HttpMethods.IsGet(ctx.Request.Method) && response.IsSuccessStatusCode;
        long? cutAt = fault?.Kind is FaultKind.Cut or FaultKind.Unauthorized or FaultKind.Corrupt or FaultKind.IgnoreRange or FaultKind.Throttle ? fault.AfterBytes : null;
        long? stallAt = fault?.Kind == FaultKind.Stall ? fault.AfterBytes ?? 0 : null;
        long? corruptAt = fault?.Kind == FaultKind.Corrupt ? fault.Offset - bodyStart : null;
        long? bytesPerSecond = fault?.Kind == FaultKind.Throttle ? fault.BytesPerSecond : null;
        var clock = System.Diagnostics.Stopwatch.StartNew();

        await using var body = await response.Content.ReadAsStreamAsync(ctx.RequestAborted).ConfigureAwait(false);
        var buffer = new byte[1 << 16];
        long sent = 0;
        while (true)
        {
            int want = buffer.Length;
            if (bytesPerSecond is long bps && !fault!.Released) want = (int)Math.Clamp(bps / 10, 1, buffer.Length);
            if (cutAt is long c) want = (int)Math.Min(want, Math.Max(c - sent, 0));
            if (stallAt is long st && sent >= st)
            {
                await ctx.Response.Body.FlushAsync(ctx.RequestAborted).ConfigureAwait(false);
                while (!fault!.Released && !ctx.RequestAborted.IsCancellationRequested)
                {
                    await Task.Delay(100, CancellationToken.None).ConfigureAwait(false);
                }
                ctx.Abort();
                return fired;
            }
            if (stallAt is long st2) want = (int)Math.Min(want, Math.Max(st2 - sent, 1));
            if (want == 0)
            {
                await CutAsync(ctx).ConfigureAwait(false);
                return fired;
            }
            int n = await body.ReadAsync(buffer.AsMemory(0, want), ctx.RequestAborted).ConfigureAwait(false);
            if (n == 0) break;
            if (corruptAt is long k && k >= sent && k < sent + n)
            {
                buffer[k - sent] ^= 0xFF;
            }
            await ctx.Response.Body.WriteAsync(buffer.AsMemory(0, n), ctx.RequestAborted).ConfigureAwait(false);
            sent += n;
            if (isBlobBody) stats.BlobBytes(n);
            if (bytesPerSecond is long rate && !fault!.Released)
            {
                var due = TimeSpan.FromSeconds(sent / (double)rate) - clock.Elapsed;
                if (due > TimeSpan.Zero) await Task.Delay(due, ctx.RequestAborted).ConfigureAwait(false);
            }
        }
        return fired;
    }

    /// <summary>
    /// Ends the response mid-body so that the client reliably receives every byte sent so far and then EOF.
    /// With a Content-Length, returning early is enough: Kestrel sees too few bytes, so it sends what was
    /// written and closes the connection gracefully (FIN). Aborting instead would reset the connection, and a
    /// reset makes the client's kernel drop data it has received but not yet read: the byte count would race.
    /// </summary>
    private static async Task CutAsync(HttpContext ctx)
    {
        await ctx.Response.Body.FlushAsync(ctx.RequestAborted).ConfigureAwait(false);
        if (ctx.Response.ContentLength is null)
        {
            // Chunked: ending normally would look complete, so the connection has to go.
            await Task.Delay(200).ConfigureAwait(false);
            ctx.Abort();
        }
    }

    /// <summary>The CDN: serves blobs straight from the registry's storage, records Authorization and Range.</summary>
    internal async Task HandleCdnAsync(HttpContext ctx)
    {
        long started = RequestRecord.NowMs();
        var path = ctx.Request.Path.Value ?? "/";
        // The full target: the signed query string is what a leak check looks for.
        var target = path + ctx.Request.QueryString.Value;
        string? range = ctx.Request.Headers.Range.Count > 0 ? ctx.Request.Headers.Range.ToString() : null;
        bool hasAuth = ctx.Request.Headers.Authorization.Count > 0;
        try
        {
            var m = CdnPath().Match(path);
            var redirect = int.TryParse(ctx.Request.Query["X-TestKit-Fault"], out var faultId) ? faults.Find(faultId) : null;
            if (!m.Success || !(HttpMethods.IsGet(ctx.Request.Method) || HttpMethods.IsHead(ctx.Request.Method)))
            {
                ctx.Response.StatusCode = 404;
                return;
            }
            if (redirect?.ExpireAfter is int limit)
            {
                var key = ctx.Request.Query["X-Amz-Signature"].ToString();
                if (_cdnUses.AddOrUpdate(key, 1, (_, n) => n + 1) > limit)
                {
                    ctx.Response.StatusCode = 403;
                    ctx.Response.ContentType = "application/xml";
                    await ctx.Response.WriteAsync("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>").ConfigureAwait(false);
                    return;
                }
            }
            if (hasAuth && redirect is { RejectAuthorization: true })
            {
                ctx.Response.StatusCode = 400;
                ctx.Response.ContentType = "application/xml";
                await ctx.Response.WriteAsync("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified</Message></Error>").ConfigureAwait(false);
                return;
            }
            var hex = m.Groups["digest"].Value["sha256:".Length..];
            var file = Path.Combine(blobStorageRoot, "sha256", hex[..2], hex, "data");
            if (!File.Exists(file))
            {
                ctx.Response.StatusCode = 404;
                return;
            }
            await using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, useAsync: true);
            long total = stream.Length;
            long start = 0, end = total - 1;
            ctx.Response.Headers.AcceptRanges = "bytes";
            ctx.Response.Headers.ETag = $"\"{m.Groups["digest"].Value}\"";
            ctx.Response.ContentType = "application/octet-stream";
            if (range is not null)
            {
                if (!TryParseRange(range, total, out start, out end))
                {
                    ctx.Response.StatusCode = 416;
                    ctx.Response.Headers.ContentRange = $"bytes */{total}";
                    return;
                }
                ctx.Response.StatusCode = 206;
                ctx.Response.Headers.ContentRange = $"bytes {start}-{end}/{total}";
            }
            else
            {
                ctx.Response.StatusCode = 200;
            }
            long length = end - start + 1;
            ctx.Response.ContentLength = length;
            if (HttpMethods.IsHead(ctx.Request.Method)) return;
            stream.Seek(start, SeekOrigin.Begin);
            var buffer = new byte[1 << 16];
            long left = length;
            while (left > 0)
            {
                int n = await stream.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, left)), ctx.RequestAborted).ConfigureAwait(false);
                if (n == 0) break;
                await ctx.Response.Body.WriteAsync(buffer.AsMemory(0, n), ctx.RequestAborted).ConfigureAwait(false);
                left -= n;
                stats.CdnBytes(n);
            }
        }
        finally
        {
            stats.Cdn(new RequestRecord(ctx.Request.Method, path, RequestKind.Blob, ctx.Response.StatusCode, range, hasAuth, null, target, started));
        }
    }

    /// <summary>One "bytes=a-b", "bytes=a-" or "bytes=-n" range (what pull clients send).</summary>
    public static bool TryParseRange(string header, long total, out long start, out long end)
    {
        start = 0;
        end = total - 1;
        if (!header.StartsWith("bytes=", StringComparison.OrdinalIgnoreCase) || header.Contains(',')) return false;
        var spec = header[6..].Trim();
        var dash = spec.IndexOf('-');
        if (dash < 0) return false;
        var a = spec[..dash].Trim();
        var b = spec[(dash + 1)..].Trim();
        if (a.Length == 0)
        {
            if (!long.TryParse(b, out var suffix) || suffix <= 0) return false;
            start = Math.Max(total - suffix, 0);
            return total > 0;
        }
        if (!long.TryParse(a, out start) || start >= total) return false;
        if (b.Length > 0)
        {
            if (!long.TryParse(b, out var e) || e < start) return false;
            end = Math.Min(e, total - 1);
        }
        return true;
    }

    /// <summary>
    /// The control API: GET /stats, POST /stats/reset, GET /faults, POST /faults (a <see cref="FaultSpec"/>
    /// as JSON), DELETE /faults.
    /// </summary>
    internal async Task HandleControlAsync(HttpContext ctx)
    {
        var path = (ctx.Request.Path.Value ?? "/").TrimEnd('/');
        var method = ctx.Request.Method;
        try
        {
            switch (path, method)
            {
                case ("/stats", "GET"):
                    await WriteJsonAsync(ctx, 200, stats.Snapshot()).ConfigureAwait(false);
                    break;
                case ("/stats/reset", "POST"):
                case ("/stats", "DELETE"):
                    stats.Reset();
                    ctx.Response.StatusCode = 204;
                    break;
                case ("/faults", "GET"):
                    await WriteJsonAsync(ctx, 200, faults.Snapshot()).ConfigureAwait(false);
                    break;
                case ("/faults", "POST"):
                    var spec = await JsonSerializer.DeserializeAsync<FaultSpec>(ctx.Request.Body, Json, ctx.RequestAborted).ConfigureAwait(false)
                        ?? throw new ArgumentException("empty fault");
                    await WriteJsonAsync(ctx, 201, faults.Add(spec)).ConfigureAwait(false);
                    break;
                case ("/faults", "DELETE"):
                case ("/faults/clear", "POST"):
                    faults.Clear();
                    ctx.Response.StatusCode = 204;
                    break;
                case ("/health", "GET"):
                    ctx.Response.StatusCode = 200;
                    break;
                default:
                    ctx.Response.StatusCode = 404;
                    break;
            }
        }
        catch (Exception ex) when (ex is ArgumentException or JsonException)
        {
            await WriteJsonAsync(ctx, 400, new { error = ex.Message }).ConfigureAwait(false);
        }
    }

    private static async Task WriteJsonAsync<T>(HttpContext ctx, int status, T value)
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(JsonSerializer.Serialize(value, Json)).ConfigureAwait(false);
    }
}
