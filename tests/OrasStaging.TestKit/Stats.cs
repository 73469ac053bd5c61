using System.Text.Json.Serialization;

namespace OrasStaging.TestKit;

/// <summary>What the proxy saw, by the distribution API's URL shapes.</summary>
public enum RequestKind
{
    Ping,
    Manifest,
    Blob,
    Upload,
    Tags,
    Catalog,
    Referrers,
    Other,
    /// <summary>Requests to the token server (not through the proxy; not in totalRequests).</summary>
    Token,
}

/// <summary>One request as the proxy, the CDN or the token server recorded it.</summary>
/// <remarks>Target is the full request target (path and query string), so a test can look for a signed query
/// string; StartedMs is when the request arrived (Unix milliseconds), so a test can measure the client's own
/// gaps between requests instead of reading its log.</remarks>
public sealed record RequestRecord(
    string Method,
    string Path,
    [property: JsonConverter(typeof(JsonStringEnumConverter))] RequestKind Kind,
    int Status,
    string? Range,
    bool Authorization,
    string? Fault,
    string Target,
    long StartedMs)
{
    public static long NowMs() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
}

/// <summary>Counters for the tests; thread-safe, reset through the control API.</summary>
public sealed class ProxyStats
{
    private const int LogLimit = 2000;
    private readonly object _gate = new();
    private long _total, _blobBytes, _cdnRequests, _cdnWithAuth, _cdnBytes, _tokenRequests, _tokenGranted, _tokenDenied;
    private readonly Dictionary<RequestKind, long> _byKind = [];
    private readonly Dictionary<FaultKind, long> _faultsFired = [];
    private readonly Dictionary<string, long> _tokenPosts = [];
    private readonly List<string> _ranges = [], _cdnRanges = [], _tokenScopes = [];
    private readonly List<RequestRecord> _requests = [], _cdnLog = [];

    internal void Request(RequestKind kind, string? range)
    {
        lock (_gate)
        {
            _total++;
            _byKind[kind] = _byKind.GetValueOrDefault(kind) + 1;
            if (range is not null) Add(_ranges, range);
        }
    }

    internal void Completed(RequestRecord record)
    {
        lock (_gate) Add(_requests, record);
    }

    internal void BlobBytes(long n) => Interlocked.Add(ref _blobBytes, n);

    internal void FaultFired(FaultKind kind)
    {
        lock (_gate) _faultsFired[kind] = _faultsFired.GetValueOrDefault(kind) + 1;
    }

    internal void Cdn(RequestRecord record)
    {
        lock (_gate)
        {
            _cdnRequests++;
            if (record.Authorization) _cdnWithAuth++;
            if (record.Range is not null) Add(_cdnRanges, record.Range);
            Add(_cdnLog, record);
        }
    }

    internal void CdnBytes(long n) => Interlocked.Add(ref _cdnBytes, n);

    /// <summary>A POST to the token server (the OAuth2 form), by its grant_type.</summary>
    internal void TokenPost(string grantType)
    {
        lock (_gate)
        {
            _tokenPosts[grantType.Length > 0 ? grantType : "none"] = _tokenPosts.GetValueOrDefault(grantType.Length > 0 ? grantType : "none") + 1;
        }
    }

    internal void Token(IEnumerable<string> scopes, bool granted)
    {
        lock (_gate)
        {
            _tokenRequests++;
            _byKind[RequestKind.Token] = _byKind.GetValueOrDefault(RequestKind.Token) + 1;
            if (granted) _tokenGranted++; else _tokenDenied++;
            foreach (var s in scopes) Add(_tokenScopes, s);
        }
    }

    private static void Add<T>(List<T> list, T item)
    {
        if (list.Count >= LogLimit) list.RemoveAt(0);
        list.Add(item);
    }

    public void Reset()
    {
        lock (_gate)
        {
            _total = _cdnRequests = _cdnWithAuth = _tokenRequests = _tokenGranted = _tokenDenied = 0;
            Interlocked.Exchange(ref _blobBytes, 0);
            Interlocked.Exchange(ref _cdnBytes, 0);
            _byKind.Clear();
            _tokenPosts.Clear();
            _faultsFired.Clear();
            _ranges.Clear(); _cdnRanges.Clear(); _tokenScopes.Clear();
            _requests.Clear(); _cdnLog.Clear();
        }
    }

    /// <summary>The JSON shape of GET /stats (camelCase).</summary>
    public StatsSnapshot Snapshot()
    {
        lock (_gate)
        {
            return new StatsSnapshot
            {
                TotalRequests = _total,
                RequestsByKind = Enum.GetValues<RequestKind>().ToDictionary(k => JsonName(k.ToString()), k => _byKind.GetValueOrDefault(k)),
                BlobBytesSent = Interlocked.Read(ref _blobBytes),
                RangeHeaders = [.. _ranges],
                FaultsFired = Enum.GetValues<FaultKind>().ToDictionary(k => JsonName(k.ToString()), k => _faultsFired.GetValueOrDefault(k)),
                CdnRequests = _cdnRequests,
                CdnRequestsWithAuthorization = _cdnWithAuth,
                CdnBytesSent = Interlocked.Read(ref _cdnBytes),
                CdnRangeHeaders = [.. _cdnRanges],
                TokenRequests = _tokenRequests,
                TokenRequestsGranted = _tokenGranted,
                TokenRequestsDenied = _tokenDenied,
                TokenScopes = [.. _tokenScopes],
                TokenPostsByGrantType = new Dictionary<string, long>(_tokenPosts),
                Requests = [.. _requests],
                CdnLog = [.. _cdnLog],
            };
        }
    }

    private static string JsonName(string s) => char.ToLowerInvariant(s[0]) + s[1..];
}

public sealed class StatsSnapshot
{
    public long TotalRequests { get; init; }
    public Dictionary<string, long> RequestsByKind { get; init; } = [];
    public long BlobBytesSent { get; init; }
    public List<string> RangeHeaders { get; init; } = [];
    public Dictionary<string, long> FaultsFired { get; init; } = [];
    public long CdnRequests { get; init; }
    public long CdnRequestsWithAuthorization { get; init; }
    public long CdnBytesSent { get; init; }
    public List<string> CdnRangeHeaders { get; init; } = [];
    public long TokenRequests { get; init; }
    public long TokenRequestsGranted { get; init; }
    public long TokenRequestsDenied { get; init; }
    public List<string> TokenScopes { get; init; } = [];
    /// <summary>POSTs to the token server (OAuth2 form) by grant_type, e.g. refresh_token for docker's identitytoken.</summary>
    public Dictionary<string, long> TokenPostsByGrantType { get; init; } = [];
    public List<RequestRecord> Requests { get; init; } = [];
    public List<RequestRecord> CdnLog { get; init; } = [];
}
