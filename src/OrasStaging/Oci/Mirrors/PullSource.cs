namespace OrasStaging.Oci.Mirrors;

/// <summary>What kind of server a <see cref="PullSource"/> is.</summary>
public enum SourceKind
{
    /// <summary>The withcache server (<c>$WITHCACHE_SERVER</c>): blobs only, keyed by the origin's blob URL, no credentials.</summary>
    Cache,

    /// <summary>A registry mirror or pull-through cache, from registries.conf or <c>-Mirror</c>.</summary>
    Mirror,

    /// <summary>The registry the reference names, after any registries.conf location rewrite.</summary>
    Origin,
}

/// <summary>Which requests a source may answer.</summary>
[Flags]
public enum SourceRoles
{
    None = 0,

    /// <summary>GET a manifest by tag: the answer is trusted as is, so by default only the origin does it.</summary>
    ResolveTag = 1,

    /// <summary>GET a manifest by digest (verified by that digest).</summary>
    Manifest = 2,

    /// <summary>GET a blob by digest (verified by that digest).</summary>
    Blob = 4,
}

/// <summary>One place to fetch from, in the order <see cref="SourcePlanner"/> gives. Shown by Resolve-OrasImage as Sources.</summary>
public sealed record PullSource
{
    public required SourceKind Kind { get; init; }

    /// <summary>
    /// The reference as it is spelt at this source (host, repository, tag, digest). For <see cref="SourceKind.Cache"/>
    /// it is the origin's reference, because withcache keys its entries by the origin's blob URL.
    /// </summary>
    public required ImageReference Reference { get; init; }

    /// <summary>host[:port] requests go to: the registry's, or the cache server's.</summary>
    public string Host => CacheServer is { } server ? server.Authority : Reference.Registry;

    public string Repository => Reference.Repository;

    /// <summary>Plain http, or https without a trusted certificate, is allowed (registries.conf <c>insecure</c>).</summary>
    public bool Insecure { get; init; }

    public required SourceRoles Roles { get; init; }

    /// <summary>False for the cache server: it must never see the user's registry credentials.</summary>
    public bool UsesCredentials { get; init; } = true;

    /// <summary>The withcache base URL; null for registries.</summary>
    public Uri? CacheServer { get; init; }

    /// <summary>Where this source was configured: <c>'file' line N</c>, <c>-Mirror</c>, <c>$WITHCACHE_SERVER</c>, or <c>reference</c>.</summary>
    public required string DefinedBy { get; init; }

    public bool Serves(SourceRoles role) => (Roles & role) == role;

    public override string ToString() => Kind == SourceKind.Cache
        ? $"Cache {CacheServer} ({Roles})"
        : $"{Kind} {Reference.Registry}/{Reference.Repository} ({Roles}{(Insecure ? ", insecure" : string.Empty)})";
}

/// <summary>
/// A mirror given on the command line (<c>-Mirror host[:port][/path]</c>): it serves the origin's repositories under
/// its path, as a pull-through cache of that origin does. <c>http://</c> in front marks it insecure.
/// </summary>
public sealed record AdHocMirror(string Location, bool Insecure)
{
    public static AdHocMirror Parse(string text)
    {
        string value = (text ?? string.Empty).Trim();
        bool insecure = false;
        if (value.StartsWith("http://", StringComparison.OrdinalIgnoreCase))
        {
            insecure = true;
            value = value["http://".Length..];
        }
        else if (value.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
        {
            value = value["https://".Length..];
        }

        value = value.TrimEnd('/');
        int slash = value.IndexOf('/');
        string host = slash < 0 ? value : value[..slash];
        string probe = value + "/x:latest";
        if (host.Length == 0 || value.Contains('@') || value.Contains('*')
            || !ImageReference.TryParse(probe, out var parsed, out _)
            || !string.Equals(parsed!.Registry, host.ToLowerInvariant(), StringComparison.Ordinal) && !IsDockerHubAlias(host))
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument,
                $"The mirror '{Redaction.Text(text ?? string.Empty)}' is not host[:port][/path].",
                "Give -Mirror as mirror.example.com, mirror.example.com:5000/prefix, or http://host:port for a plain-http mirror.");
        }

        return new AdHocMirror(value, insecure);
    }

    private static bool IsDockerHubAlias(string host) =>
        host.ToLowerInvariant() is "docker.io" or "index.docker.io" or "registry.hub.docker.com";
}
