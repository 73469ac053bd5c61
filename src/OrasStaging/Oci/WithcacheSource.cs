using System.Text;

namespace OrasStaging.Oci;

/// <summary>
/// A withcache server as a blob source: <c>&lt;server&gt;/b/&lt;urlsafe-base64(origin URL), unpadded&gt;/&lt;basename&gt;</c>.
/// Requests go through the transport (User-Agent, redirects, retries of dropped connections) but anonymously:
/// the cache never sees the registry's credentials. Best effort: any failure means "go to the registry", and
/// the digest is checked whichever source served the bytes.
/// </summary>
internal sealed class WithcacheSource
{
    /// <summary>The probe's whole budget, retries included: a slow cache must not slow a pull.</summary>
    public static readonly TimeSpan ProbeBudget = TimeSpan.FromSeconds(3);

    private readonly RegistryTransport _transport;
    private readonly IOperationSink _sink;

    public WithcacheSource(RegistryTransport transport, IOperationSink sink)
    {
        _transport = transport;
        _sink = sink;
    }

    /// <summary>HEAD within <see cref="ProbeBudget"/>: the cache URL on a hit, null on a miss or any error.</summary>
    public async Task<Uri?> ProbeAsync(Uri origin, CancellationToken ct)
    {
        string? server = _transport.Options.CacheServer ?? Environment.GetEnvironmentVariable("WITHCACHE_SERVER");
        if (string.IsNullOrWhiteSpace(server))
        {
            return null;
        }

        Uri cacheUri;
        try
        {
            cacheUri = CacheUriFor(server, origin);
        }
        catch (UriFormatException)
        {
            _sink.Warning($"Ignoring the cache server '{Redaction.Text(server)}': it is not an absolute http(s) URL.");
            return null;
        }

        using var budget = CancellationTokenSource.CreateLinkedTokenSource(ct);
        budget.CancelAfter(ProbeBudget);
        try
        {
            using var response = await _transport.SendAsync(Request(HttpMethod.Head, cacheUri, null), budget.Token).ConfigureAwait(false);
            if (response.IsSuccessStatusCode)
            {
                _sink.Verbose($"Cache hit at {cacheUri.Host}:{cacheUri.Port}; downloading from the cache (the digest is still checked).");
                return cacheUri;
            }

            _sink.Verbose($"Cache miss at {cacheUri.Host}:{cacheUri.Port} (HTTP {(int)response.StatusCode}); going to the registry.");
        }
        catch (Exception ex) when (IsUnavailable(ex, ct))
        {
            _sink.Verbose($"The cache server {cacheUri.Host}:{cacheUri.Port} did not answer ({RegistryTransport.Describe(ex)}); going to the registry.");
        }

        return null;
    }

    /// <summary>GET from <paramref name="range"/> on; a 5xx is returned, not retried (the registry is the fallback).</summary>
    public Task<HttpResponseMessage> GetAsync(Uri cacheUri, long? range, CancellationToken ct) =>
        _transport.SendAsync(Request(HttpMethod.Get, cacheUri, range), ct);

    /// <summary>A failure that means "the cache is not there": a dropped connection, or the transport's retries ran out.</summary>
    public static bool IsUnavailable(Exception ex, CancellationToken ct) =>
        RegistryTransport.IsConnectionFailure(ex, ct) || (ex is OrasStagingException o && GiveUp.IsGiveUp(o.Code));

    internal static Uri CacheUriFor(string server, Uri origin)
    {
        var serverUri = new Uri(server.TrimEnd('/') + "/", UriKind.Absolute);
        if (serverUri.Scheme is not ("http" or "https"))
        {
            throw new UriFormatException("not http(s)");
        }

        string key = Convert.ToBase64String(Encoding.UTF8.GetBytes(origin.AbsoluteUri)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        string basename = origin.Segments[^1];
        return new Uri(serverUri, "b/" + key + "/" + basename);
    }

    private static RegistryRequest Request(HttpMethod method, Uri cacheUri, long? range) =>
        new(method, cacheUri, cacheUri.Authority, string.Empty, "the cache server")
        {
            Anonymous = true,
            RetryTransient = false,
            RangeFrom = range,
        };
}
