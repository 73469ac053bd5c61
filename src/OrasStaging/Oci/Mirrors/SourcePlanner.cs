namespace OrasStaging.Oci.Mirrors;

/// <summary>The sources for one reference, in the order to try them, and what the plan was built from.</summary>
public sealed record SourcePlan(ImageReference Reference, ImageReference Origin, IReadOnlyList<PullSource> Sources, IReadOnlyList<string> Notes)
{
    /// <summary>The sources that may answer <paramref name="role"/>, in order.</summary>
    public IEnumerable<PullSource> For(SourceRoles role) => Sources.Where(s => s.Serves(role));
}

/// <summary>
/// Orders the places a pull may use. Pure: no network, no files. The rules:
/// <list type="bullet">
/// <item>the <c>[[registry]]</c> with the longest matching prefix decides; <c>blocked</c> refuses the pull; its
/// <c>location</c> rewrites the origin;</item>
/// <item>order: the withcache server (blobs only, no credentials), then <c>-Mirror</c> mirrors, then the config's
/// mirrors in file order, then the origin, which may answer everything;</item>
/// <item>a reference pinned by digest may take manifests and blobs from a mirror; a tag is resolved at the origin and
/// only the digest-verified requests (manifests by digest, blobs) go to mirrors, unless the mirror says
/// <c>pull-from-mirror = "all"</c> or <c>"tag-only"</c>, which opts it into answering tags as the container engines
/// would;</item>
/// <item><c>digest-only</c> (or the registry's <c>mirror-by-digest-only</c>) drops a mirror for tag references,
/// <c>tag-only</c> drops it for digest references.</item>
/// </list>
/// </summary>
internal static class SourcePlanner
{
    internal static SourcePlan Plan(ImageReference reference, RegistriesConf conf, IReadOnlyList<AdHocMirror>? adHocMirrors, string? cacheServer)
    {
        var notes = new List<string>();
        bool pinned = reference.Digest is not null;
        var entry = conf.Find(RegistriesConf.NameOf(reference));
        if (entry is { Blocked: true })
        {
            throw new OrasStagingException(ErrorCode.AccessDenied,
                $"Pulling '{Redaction.Text(reference.ToString())}' is blocked by the registries config {entry.DefinedAt} (prefix '{entry.Prefix}').",
                "Pull from a registry that is not blocked, or remove blocked = true from that entry.");
        }

        var origin = entry is null ? reference : RegistriesConf.Rewrite(reference, entry, entry.Location, entry.DefinedAt);
        if (entry is not null)
        {
            notes.Add($"Registry entry: prefix '{entry.Prefix}' from {entry.DefinedAt}.");
        }

        var sources = new List<PullSource>();
        if (CacheSource(origin, cacheServer, notes) is { } cache)
        {
            sources.Add(cache);
        }

        foreach (var mirror in adHocMirrors ?? Array.Empty<AdHocMirror>())
        {
            var at = AdHocReference(origin, mirror);
            if (!sources.Any(s => s.Kind == SourceKind.Mirror && s.Reference == at))
            {
                sources.Add(new PullSource
                {
                    Kind = SourceKind.Mirror,
                    Reference = at,
                    Insecure = mirror.Insecure,
                    Roles = SourceRoles.Manifest | SourceRoles.Blob,
                    DefinedBy = "-Mirror",
                });
            }
        }

        foreach (var mirror in entry?.Mirrors ?? Array.Empty<MirrorEntry>())
        {
            var mode = entry!.MirrorByDigestOnly ? PullFromMirror.DigestOnly : mirror.PullFromMirror;
            if ((pinned && mode == PullFromMirror.TagOnly) || (!pinned && mode == PullFromMirror.DigestOnly))
            {
                notes.Add($"Mirror {mirror.Location} ({mirror.DefinedAt}) is not used: it is {(pinned ? "tag-only" : "digest-only")}.");
                continue;
            }

            var roles = SourceRoles.Manifest | SourceRoles.Blob;
            if (!pinned && mode is PullFromMirror.All or PullFromMirror.TagOnly)
            {
                roles |= SourceRoles.ResolveTag;
            }

            var at = RegistriesConf.Rewrite(reference, entry, mirror.Location, mirror.DefinedAt);
            sources.Add(new PullSource { Kind = SourceKind.Mirror, Reference = at, Insecure = mirror.Insecure, Roles = roles, DefinedBy = mirror.DefinedAt });
        }

        sources.Add(new PullSource
        {
            Kind = SourceKind.Origin,
            Reference = origin,
            Insecure = entry?.Insecure ?? false,
            Roles = (pinned ? SourceRoles.None : SourceRoles.ResolveTag) | SourceRoles.Manifest | SourceRoles.Blob,
            DefinedBy = entry is null || entry.Location.Length == 0 ? "reference" : entry.DefinedAt,
        });
        return new SourcePlan(reference, origin, sources, notes);
    }

    /// <summary>The -Mirror rule: the mirror's path, then the origin's repository, tag and digest.</summary>
    internal static ImageReference AdHocReference(ImageReference origin, AdHocMirror mirror)
    {
        string name = mirror.Location + "/" + origin.Repository
            + (origin.Tag is null ? string.Empty : ":" + origin.Tag)
            + (origin.Digest is null ? string.Empty : "@" + origin.Digest);
        return ImageReference.TryParse(name, out var result, out var error)
            ? result!
            : throw new OrasStagingException(ErrorCode.InvalidArgument,
                $"The mirror '{mirror.Location}' does not make a valid reference for '{Redaction.Text(origin.ToString())}': {error}",
                "Give -Mirror as host[:port][/path].");
    }

    private static PullSource? CacheSource(ImageReference origin, string? cacheServer, List<string> notes)
    {
        if (string.IsNullOrWhiteSpace(cacheServer))
        {
            return null;
        }

        if (!Uri.TryCreate(cacheServer.Trim().TrimEnd('/') + "/", UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
        {
            notes.Add($"The cache server '{Redaction.Text(cacheServer)}' is ignored: it is not an absolute http(s) URL.");
            return null;
        }

        return new PullSource
        {
            Kind = SourceKind.Cache,
            Reference = origin,
            Roles = SourceRoles.Blob,
            UsesCredentials = false,
            Insecure = uri.Scheme == "http",
            CacheServer = uri,
            DefinedBy = "$WITHCACHE_SERVER",
        };
    }
}
