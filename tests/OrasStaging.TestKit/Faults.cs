using System.Text.Json.Serialization;

namespace OrasStaging.TestKit;

/// <summary>The faults the proxy can inject. Names are case-insensitive; the numbers are accepted as aliases.</summary>
public enum FaultKind
{
    /// <summary>Close the connection after <c>afterBytes</c> body bytes (alias "cut").</summary>
    Cut,
    /// <summary>429 with <c>Retry-After: retryAfter</c> (alias "429").</summary>
    TooManyRequests,
    /// <summary>503, with <c>Retry-After</c> when <c>retryAfter</c> is given (alias "503").</summary>
    ServiceUnavailable,
    /// <summary>401 with the registry's challenge; with <c>afterBytes</c>, a token that "expires" mid-download (alias "401").</summary>
    Unauthorized,
    /// <summary>Flip one byte (XOR 0xFF) at blob offset <c>offset</c> (alias "corrupt"); with <c>afterBytes</c>, then cut
    /// the connection there (a bad first body that the client must resume).</summary>
    Corrupt,
    /// <summary>307 to the CDN listener, which serves the same bytes with Range support (alias "307").</summary>
    Redirect,
    /// <summary>Send the body at <c>bytesPerSecond</c> (alias "slow"): for progress and cancellation tests; with
    /// <c>afterBytes</c>, cut the slow body there (a long first request, then a resume).</summary>
    Throttle,
    /// <summary>Answer <c>statusCode</c> (for example 408, 403 or 404) without asking the registry, with
    /// <c>Retry-After</c> when <c>retryAfter</c> is given (alias "status").</summary>
    Status,
    /// <summary>Forward a request that carries Range without it, so the registry answers 200 with the whole blob
    /// (a server that ignores Range); with <c>afterBytes</c>, cut that body there (alias "ignorerange").
    /// Requests without Range are not touched and do not use up a firing.</summary>
    IgnoreRange,
    /// <summary>Send the headers and <c>afterBytes</c> (default 0) body bytes, then nothing until the client gives up
    /// or the faults are cleared (alias "stall").</summary>
    Stall,
}

/// <summary>Which requests a fault applies to; faults only ever apply to GET requests.</summary>
public enum FaultTarget
{
    Blob,
    Manifest,
    Any,
}

/// <summary>A fault as set through the control API (POST /faults) or <see cref="FaultState.Add"/>.</summary>
public sealed class FaultSpec
{
    public string Kind { get; set; } = "";
    /// <summary>How many requests the fault fires on; -1 = until cleared. Default 1 (Redirect: -1).</summary>
    public int? Times { get; set; }
    /// <summary>Cut / Unauthorized: body bytes sent before the connection is closed.</summary>
    public long? AfterBytes { get; set; }
    /// <summary>TooManyRequests / ServiceUnavailable: Retry-After seconds (429 default 1; 503 none).</summary>
    public int? RetryAfter { get; set; }
    /// <summary>Corrupt: offset within the blob (a 206 body is mapped through Content-Range). Default 0.</summary>
    public long? Offset { get; set; }
    /// <summary>blob (default) | manifest | any.</summary>
    public string? Target { get; set; }
    /// <summary>Redirect: the CDN answers 400 (as S3 does) to requests that carry Authorization.</summary>
    public bool? RejectAuthorization { get; set; }
    /// <summary>Redirect: each CDN URL answers 403 (expired, as S3 does) once it has served this many requests.</summary>
    public int? ExpireAfter { get; set; }
    /// <summary>Throttle: body bytes per second.</summary>
    public long? BytesPerSecond { get; set; }
    /// <summary>Only requests whose path contains this text (e.g. a repository name or a digest).</summary>
    public string? PathContains { get; set; }
    /// <summary>Status: the HTTP status to answer with.</summary>
    public int? StatusCode { get; set; }
}

/// <summary>An active fault with its counters.</summary>
public sealed class Fault
{
    private int _remaining;
    private int _fired;

    internal Fault(int id, FaultSpec spec)
    {
        Id = id;
        Kind = ParseKind(spec.Kind);
        Target = spec.Target?.ToLowerInvariant() switch
        {
            null or "" or "blob" or "blobs" => FaultTarget.Blob,
            "manifest" or "manifests" => FaultTarget.Manifest,
            "any" or "all" => FaultTarget.Any,
            var t => throw new ArgumentException($"unknown fault target '{t}' (blob|manifest|any)"),
        };
        Times = spec.Times ?? (Kind == FaultKind.Redirect ? -1 : 1);
        if (Times == 0 || Times < -1) throw new ArgumentException("times must be positive or -1 (until cleared)");
        _remaining = Times;
        AfterBytes = spec.AfterBytes;
        if (Kind == FaultKind.Cut && AfterBytes is null) throw new ArgumentException("Cut needs afterBytes");
        if (AfterBytes < 0) throw new ArgumentException("afterBytes must be >= 0");
        RetryAfter = spec.RetryAfter ?? (Kind == FaultKind.TooManyRequests ? 1 : null);
        Offset = spec.Offset ?? 0;
        RejectAuthorization = spec.RejectAuthorization ?? false;
        ExpireAfter = spec.ExpireAfter;
        if (ExpireAfter is <= 0) throw new ArgumentException("expireAfter must be positive");
        BytesPerSecond = spec.BytesPerSecond;
        if (Kind == FaultKind.Throttle && BytesPerSecond is null or <= 0) throw new ArgumentException("Throttle needs bytesPerSecond > 0");
        PathContains = string.IsNullOrEmpty(spec.PathContains) ? null : spec.PathContains;
        StatusCode = spec.StatusCode;
        if (Kind == FaultKind.Status && StatusCode is not (>= 400 and <= 599)) throw new ArgumentException("Status needs statusCode 400-599");
    }

    public int Id { get; }
    [JsonConverter(typeof(JsonStringEnumConverter))]
    public FaultKind Kind { get; }
    [JsonConverter(typeof(JsonStringEnumConverter))]
    public FaultTarget Target { get; }
    public int Times { get; }
    public long? AfterBytes { get; }
    public int? RetryAfter { get; }
    public long Offset { get; }
    public bool RejectAuthorization { get; }
    public int? ExpireAfter { get; }
    public long? BytesPerSecond { get; }
    public string? PathContains { get; }
    public int? StatusCode { get; }
    public int Remaining => Volatile.Read(ref _remaining);
    public int Fired => Volatile.Read(ref _fired);

    /// <summary>
    /// Set when the faults are cleared: a Throttle already under way then sends the rest at full speed, so a test
    /// can hold a client mid-download for as long as it needs (a lock held, a wait observed) and then let it go.
    /// </summary>
    [JsonIgnore]
    internal bool Released { get => Volatile.Read(ref _released); set => Volatile.Write(ref _released, value); }
    private bool _released;

    /// <summary>Unauthorized with afterBytes: the Authorization value (or "" for none) that "expired".</summary>
    [JsonIgnore]
    internal string? ExpiredAuthorization { get; set; }

    internal bool Matches(string method, RequestKind kind, string path)
    {
        if (!HttpMethodsEqual(method, "GET")) return false;
        if (PathContains is not null && !path.Contains(PathContains, StringComparison.Ordinal)) return false;
        return Target switch
        {
            FaultTarget.Blob => kind == RequestKind.Blob,
            FaultTarget.Manifest => kind == RequestKind.Manifest,
            _ => true,
        };
    }

    internal bool Exhausted => Times != -1 && Volatile.Read(ref _remaining) <= 0;

    /// <summary>Takes one firing; false when another request took the last one.</summary>
    internal bool TryConsume()
    {
        if (Times != -1)
        {
            while (true)
            {
                var r = Volatile.Read(ref _remaining);
                if (r <= 0) return false;
                if (Interlocked.CompareExchange(ref _remaining, r - 1, r) == r) break;
            }
        }
        Interlocked.Increment(ref _fired);
        return true;
    }

    private static bool HttpMethodsEqual(string a, string b) => string.Equals(a, b, StringComparison.OrdinalIgnoreCase);

    public static FaultKind ParseKind(string? text) => text?.Trim().ToLowerInvariant() switch
    {
        "cut" or "disconnect" => FaultKind.Cut,
        "toomanyrequests" or "429" or "ratelimit" => FaultKind.TooManyRequests,
        "serviceunavailable" or "503" or "unavailable" => FaultKind.ServiceUnavailable,
        "unauthorized" or "401" or "tokenexpiry" => FaultKind.Unauthorized,
        "corrupt" => FaultKind.Corrupt,
        "redirect" or "307" or "cdn" => FaultKind.Redirect,
        "throttle" or "slow" => FaultKind.Throttle,
        "status" => FaultKind.Status,
        "ignorerange" or "rangeto200" => FaultKind.IgnoreRange,
        "stall" => FaultKind.Stall,
        _ => throw new ArgumentException($"unknown fault kind '{text}' (Cut|TooManyRequests|ServiceUnavailable|Unauthorized|Corrupt|Redirect|Throttle|Status|IgnoreRange|Stall)"),
    };
}

/// <summary>The proxy's active faults, in the order they were set; a request triggers at most one.</summary>
public sealed class FaultState
{
    private readonly List<Fault> _faults = [];
    private int _nextId;

    public Fault Add(FaultSpec spec)
    {
        var fault = new Fault(Interlocked.Increment(ref _nextId), spec);
        lock (_faults) _faults.Add(fault);
        return fault;
    }

    public void Clear()
    {
        lock (_faults)
        {
            foreach (var f in _faults) f.Released = true;
            _faults.Clear();
        }
    }

    public IReadOnlyList<Fault> Snapshot()
    {
        lock (_faults) return _faults.ToArray();
    }

    /// <summary>The CDN asks which redirect sent a client (its id is in the URL) to apply that fault's options.</summary>
    internal Fault? Find(int id)
    {
        lock (_faults) return _faults.FirstOrDefault(f => f.Id == id);
    }

    internal IEnumerable<Fault> Candidates(string method, RequestKind kind, string path)
    {
        Fault[] list;
        lock (_faults) list = _faults.ToArray();
        return list.Where(f => f.Matches(method, kind, path));
    }
}
