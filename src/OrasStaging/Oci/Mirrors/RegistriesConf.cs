namespace OrasStaging.Oci.Mirrors;

/// <summary>
/// <c>pull-from-mirror</c> of one <c>[[registry.mirror]]</c> (containers-registries.conf(5)). <see cref="Unset"/> is
/// kept apart from an explicit <see cref="All"/> because this module's default is safer than the engines': a tag is
/// resolved at the origin unless the config says a mirror may answer tag pulls.
/// </summary>
internal enum PullFromMirror
{
    Unset,
    All,
    DigestOnly,
    TagOnly,
}

/// <summary>One <c>[[registry.mirror]]</c>. <see cref="DefinedAt"/> is <c>file:line</c>, for messages.</summary>
internal sealed record MirrorEntry(string Location, bool Insecure, PullFromMirror PullFromMirror, string DefinedAt);

/// <summary>
/// One <c>[[registry]]</c> after the man page's post-processing: <see cref="Prefix"/> defaults to
/// <see cref="Location"/>; an empty <see cref="Location"/> (allowed only for a <c>*.host</c> prefix) means no rewrite.
/// </summary>
internal sealed record RegistryEntry(
    string Prefix,
    string Location,
    bool Insecure,
    bool Blocked,
    bool MirrorByDigestOnly,
    IReadOnlyList<MirrorEntry> Mirrors,
    string DefinedAt)
{
    public bool IsWildcard => Prefix.StartsWith("*.", StringComparison.Ordinal);
}

/// <summary>
/// The merged containers-registries.conf v2 configuration: the main file, then each drop-in, where a later
/// <c>[[registry]]</c> with the same prefix replaces the earlier one whole and new prefixes are added
/// (containers-registries.conf.d(5)). Lookup follows the longest-prefix rule of containers-registries.conf(5).
/// </summary>
internal sealed class RegistriesConf
{
    public static RegistriesConf Empty { get; } = new(Array.Empty<RegistryEntry>(), Array.Empty<string>(), null);

    public RegistriesConf(IReadOnlyList<RegistryEntry> registries, IReadOnlyList<string> files, IReadOnlyList<string>? unqualifiedSearchRegistries)
    {
        Registries = registries;
        Files = files;
        UnqualifiedSearchRegistries = unqualifiedSearchRegistries;
    }

    /// <summary>In load order; a drop-in's replacement keeps the position of the entry it replaced.</summary>
    public IReadOnlyList<RegistryEntry> Registries { get; }

    /// <summary>The files that were read, in order (for Verbose output and messages).</summary>
    public IReadOnlyList<string> Files { get; }

    /// <summary>Parsed for the override rule only; this module never expands short names.</summary>
    public IReadOnlyList<string>? UnqualifiedSearchRegistries { get; }

    /// <summary>This configuration overlaid with a later file (a drop-in).</summary>
    public RegistriesConf OverlaidWith(RegistriesConf later)
    {
        var merged = new List<RegistryEntry>(Registries);
        foreach (var entry in later.Registries)
        {
            int at = merged.FindIndex(e => string.Equals(e.Prefix, entry.Prefix, StringComparison.Ordinal));
            if (at >= 0)
            {
                merged[at] = entry;
            }
            else
            {
                merged.Add(entry);
            }
        }

        return new RegistriesConf(merged, Files.Concat(later.Files).ToArray(),
            later.UnqualifiedSearchRegistries ?? UnqualifiedSearchRegistries);
    }

    /// <summary>
    /// The one <c>[[registry]]</c> whose prefix matches <paramref name="name"/> longest, or null. On equal length an
    /// exact prefix wins over a wildcard (it is the more specific rule), then the earlier entry.
    /// </summary>
    /// <param name="name">The user-facing name, <c>host[:port]/repository[:tag][@digest]</c>, as <see cref="NameOf"/> gives it.</param>
    public RegistryEntry? Find(string name)
    {
        RegistryEntry? best = null;
        int bestLength = -1;
        foreach (var entry in Registries)
        {
            int length = MatchLength(name, entry.Prefix);
            if (length > bestLength || (length == bestLength && length >= 0 && best!.IsWildcard && !entry.IsWildcard))
            {
                best = entry;
                bestLength = length;
            }
        }

        return best;
    }

    /// <summary>
    /// How much of <paramref name="name"/> a prefix matches, or -1. A plain prefix must be followed by the end or by
    /// one of <c>/ : @</c>; <c>*.example.com</c> matches any number of subdomains of the host part only.
    /// </summary>
    public static int MatchLength(string name, string prefix)
    {
        if (prefix.StartsWith("*.", StringComparison.Ordinal))
        {
            int slash = name.IndexOf('/');
            string host = slash < 0 ? name : name[..slash];
            int port = host.LastIndexOf(':');
            string hostName = port >= 0 && !host.EndsWith(']') ? host[..port] : host;
            string suffix = prefix[1..];
            return hostName.Length > suffix.Length && hostName.EndsWith(suffix, StringComparison.OrdinalIgnoreCase)
                ? hostName.Length
                : -1;
        }

        if (name.Length < prefix.Length || !name.StartsWith(prefix, StringComparison.Ordinal))
        {
            return -1;
        }

        return name.Length == prefix.Length || name[prefix.Length] is '/' or ':' or '@' ? prefix.Length : -1;
    }

    /// <summary>
    /// A reference as registries.conf spells names: Docker Hub is <c>docker.io</c> there, while
    /// <see cref="ImageReference.Registry"/> holds the wire host.
    /// </summary>
    public static string NameOf(ImageReference reference)
    {
        string registry = reference.Registry == ImageReference.DockerHubWireHost ? "docker.io" : reference.Registry;
        return registry + "/" + reference.Repository
            + (reference.Tag is null ? string.Empty : ":" + reference.Tag)
            + (reference.Digest is null ? string.Empty : "@" + reference.Digest);
    }

    /// <summary>
    /// <paramref name="reference"/> with the matched part of its name replaced by <paramref name="location"/>
    /// (the man page's rewrite: <c>example.com/foo</c> → <c>internal.example.net/bar</c> turns
    /// <c>example.com/foo/img:1</c> into <c>internal.example.net/bar/img:1</c>). An empty location is no rewrite.
    /// </summary>
    public static ImageReference Rewrite(ImageReference reference, RegistryEntry entry, string location, string definedAt)
    {
        if (location.Length == 0)
        {
            return reference;
        }

        string name = NameOf(reference);
        int matched = MatchLength(name, entry.Prefix);
        if (matched < 0)
        {
            throw new InvalidOperationException("Rewrite called with an entry that does not match.");
        }

        // A wildcard stands for a whole registry, so its replacement takes the port too; keeping ":5000" after a
        // mirror's path would make no valid name.
        if (entry.IsWildcard && matched < name.Length && name[matched] == ':')
        {
            int slash = name.IndexOf('/', matched);
            matched = slash < 0 ? name.Length : slash;
        }

        string rewritten = location + name[matched..];
        if (!ImageReference.TryParse(rewritten, out var result, out var error))
        {
            throw new OrasStagingException(ErrorCode.ConfigInvalid,
                $"The registry entry at {definedAt} rewrites '{Redaction.Text(name)}' to '{Redaction.Text(rewritten)}', which is not a valid reference: {error}",
                "Fix the prefix or location so the rewritten name is host[:port]/repository with a tag or digest.");
        }

        return result!;
    }
}
