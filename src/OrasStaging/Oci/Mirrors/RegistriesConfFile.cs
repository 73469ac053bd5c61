using Tomlyn;
using Tomlyn.Model;
using Tomlyn.Serialization;

namespace OrasStaging.Oci.Mirrors;

/// <summary>
/// Parses one containers-registries.conf file (version 2, and the version 1 <c>insecure</c>/<c>block</c> lists)
/// into a <see cref="RegistriesConf"/>, with the man page's validation. Every error names the file and line.
/// Keys this module has no use for (aliases, short-name-mode, credential-helpers…) are accepted and ignored, as the
/// container engines do.
/// </summary>
internal static class RegistriesConfFile
{
    private const string SyntaxAction = "Fix the file; it is read as TOML, in the format of containers-registries.conf(5).";

    public static RegistriesConf Read(string path)
    {
        string text = IO.FileRules.ReadConfigText(path, "the registries config", "Give the path of a registries.conf file.",
            "Check the path given with -RegistryConfigPath or $CONTAINERS_REGISTRIES_CONF.");

        return Parse(text, path);
    }

    public static RegistriesConf Parse(string text, string sourceName)
    {
        var metadata = new TomlMetadataStore();
        var options = new TomlSerializerOptions { SourceName = sourceName, MetadataStore = metadata };
        TomlTable root;
        try
        {
            root = TomlSerializer.Deserialize<TomlTable>(text, options) ?? new TomlTable();
        }
        catch (TomlException ex)
        {
            // The message already reads "file(line,column) : error : ..."; keep the first line for the summary.
            string first = ex.Message.Split('\n')[0].Trim();
            throw new OrasStagingException(ErrorCode.ConfigInvalid,
                $"'{sourceName}' is not valid TOML (line {ex.Line}): {first}", SyntaxAction, ex);
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
        {
            throw new OrasStagingException(ErrorCode.ConfigInvalid, $"'{sourceName}' is not valid TOML: {ex.Message}", SyntaxAction, ex);
        }

        var reader = new Reader(sourceName, metadata);
        return reader.Root(root);
    }

    private sealed class Reader(string source, TomlMetadataStore metadata)
    {
        public RegistriesConf Root(TomlTable root)
        {
            var registries = new List<RegistryEntry>();
            bool v2 = root.ContainsKey("registry") || root.ContainsKey("unqualified-search-registries");
            if (root.TryGetValue("registries", out var v1Value))
            {
                if (v2)
                {
                    throw Invalid(root, "registries",
                        "mixes the version 1 [registries.*] tables with version 2 settings", "Use [[registry]] tables only.");
                }

                ReadVersion1(Table(root, "registries", v1Value), registries);
            }

            IReadOnlyList<string>? search = null;
            if (root.TryGetValue("unqualified-search-registries", out var searchValue))
            {
                search = StringArray(root, "unqualified-search-registries", searchValue);
            }

            if (root.TryGetValue("registry", out var registryValue))
            {
                if (registryValue is not TomlTableArray array)
                {
                    throw Invalid(root, "registry", "'registry' must be an array of tables, written [[registry]]", null);
                }

                foreach (var table in array)
                {
                    var entry = Registry(table);
                    var earlier = registries.Find(e => e.Prefix == entry.Prefix);
                    if (earlier is not null)
                    {
                        throw Invalid(table, "prefix", $"defines the prefix '{entry.Prefix}' a second time (first at {earlier.DefinedAt})",
                            "Keep one [[registry]] per prefix in a file; a drop-in may replace one from an earlier file.");
                    }

                    registries.Add(entry);
                }
            }

            return new RegistriesConf(registries, new[] { source }, search);
        }

        private RegistryEntry Registry(TomlTable table)
        {
            string at = At(table, null);
            string location = Location(table, "location", OptionalString(table, "location") ?? string.Empty);
            string? rawPrefix = OptionalString(table, "prefix");
            string prefix;
            if (rawPrefix is null)
            {
                if (location.Length == 0)
                {
                    throw Invalid(table, null, "has neither prefix nor location", "Give the [[registry]] a location (and a prefix when it differs).");
                }

                prefix = location;
            }
            else
            {
                if (!rawPrefix.Trim().StartsWith("*.", StringComparison.Ordinal) && rawPrefix.Contains('*'))
                {
                    throw Invalid(table, "prefix", $"has the prefix '{rawPrefix}'; '*' is allowed only as a leading '*.'", "Write the prefix as *.example.com.");
                }

                prefix = Location(table, "prefix", rawPrefix);
                if (prefix.StartsWith("*.", StringComparison.Ordinal))
                {
                    if (prefix.IndexOfAny(new[] { '/', ':', '@' }) >= 0 || prefix.IndexOf('*', 1) >= 0)
                    {
                        throw Invalid(table, "prefix", $"has the wildcard prefix '{prefix}'; a wildcard prefix is only *.host, with nothing after the host",
                            "Write the prefix as *.example.com.");
                    }
                }
                else if (location.Length == 0)
                {
                    throw Invalid(table, "prefix", $"has the prefix '{prefix}' but no location; only a *.host prefix may omit it",
                        "Add location = \"<host>[/path]\" (the same as the prefix when nothing is rewritten).");
                }
            }

            bool byDigestOnly = OptionalBool(table, "mirror-by-digest-only") ?? false;
            var mirrors = new List<MirrorEntry>();
            if (table.TryGetValue("mirror", out var mirrorValue))
            {
                if (mirrorValue is not TomlTableArray mirrorArray)
                {
                    throw Invalid(table, "mirror", "'mirror' must be an array of tables, written [[registry.mirror]]", null);
                }

                foreach (var mirror in mirrorArray)
                {
                    mirrors.Add(Mirror(mirror, table.ContainsKey("mirror-by-digest-only")));
                }
            }

            return new RegistryEntry(prefix, location, OptionalBool(table, "insecure") ?? false, OptionalBool(table, "blocked") ?? false,
                byDigestOnly, mirrors, at);
        }

        private MirrorEntry Mirror(TomlTable table, bool registryHasByDigestOnly)
        {
            string raw = OptionalString(table, "location") ?? string.Empty;
            string location = Location(table, "location", raw);
            if (location.Length == 0)
            {
                throw Invalid(table, "location", "is a [[registry.mirror]] without a location", "Give each mirror location = \"<host>[/path]\".");
            }

            if (location.Contains('*'))
            {
                throw Invalid(table, "location", $"has the mirror location '{location}'; a location cannot hold a wildcard", null);
            }

            var mode = PullFromMirror.Unset;
            if (OptionalString(table, "pull-from-mirror") is { } text)
            {
                if (registryHasByDigestOnly)
                {
                    throw Invalid(table, "pull-from-mirror", "sets pull-from-mirror while its registry sets mirror-by-digest-only",
                        "Use one of the two; pull-from-mirror = \"digest-only\" replaces mirror-by-digest-only = true.");
                }

                mode = text switch
                {
                    "" or "all" => text.Length == 0 ? PullFromMirror.Unset : PullFromMirror.All,
                    "digest-only" => PullFromMirror.DigestOnly,
                    "tag-only" => PullFromMirror.TagOnly,
                    _ => throw Invalid(table, "pull-from-mirror", $"has pull-from-mirror = \"{text}\"",
                        "Use \"all\", \"digest-only\" or \"tag-only\"."),
                };
            }

            return new MirrorEntry(location, OptionalBool(table, "insecure") ?? false, mode, At(table, "location"));
        }

        private void ReadVersion1(TomlTable registries, List<RegistryEntry> into)
        {
            foreach (var (list, insecure, blocked) in new[] { ("insecure", true, false), ("block", false, true) })
            {
                if (!registries.TryGetValue(list, out var value))
                {
                    continue;
                }

                var table = Table(registries, list, value);
                if (!table.TryGetValue("registries", out var hosts))
                {
                    continue;
                }

                foreach (string host in StringArray(table, "registries", hosts))
                {
                    string location = Location(table, "registries", host);
                    int at = into.FindIndex(e => e.Prefix == location);
                    var previous = at >= 0 ? into[at] : new RegistryEntry(location, location, false, false, false, Array.Empty<MirrorEntry>(), At(table, "registries"));
                    var entry = previous with { Insecure = previous.Insecure || insecure, Blocked = previous.Blocked || blocked };
                    if (at >= 0)
                    {
                        into[at] = entry;
                    }
                    else
                    {
                        into.Add(entry);
                    }
                }
            }
        }

        /// <summary>The man page's location form: host[:port][/path], no scheme, trailing '/' dropped.</summary>
        private string Location(TomlTable table, string key, string value)
        {
            string trimmed = value.Trim().TrimEnd('/');
            if (trimmed.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || trimmed.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
            {
                throw Invalid(table, key, $"has {key} = \"{value}\"; a location cannot carry http:// or https://",
                    "Drop the scheme; set insecure = true for a registry reached over plain http.");
            }

            if (trimmed.Length > 0 && !trimmed.StartsWith("*.", StringComparison.Ordinal))
            {
                int slash = trimmed.IndexOf('/');
                string host = slash < 0 ? trimmed : trimmed[..slash];
                bool looksLikeHost = host.Contains('.') || host.Contains(':') || host == "localhost" || host.StartsWith('[');
                if (!looksLikeHost || !ImageReference.TryParse(host + "/x:latest", out _, out _))
                {
                    throw Invalid(table, key, $"has {key} = \"{value}\", which does not start with a registry host[:port]",
                        "Write the host as a DNS name, an address, or localhost, optionally with :port and a /path.");
                }
            }

            return trimmed;
        }

        private string? OptionalString(TomlTable table, string key) =>
            !table.TryGetValue(key, out var value) ? null
            : value as string ?? throw Invalid(table, key, $"'{key}' must be a string", null);

        private bool? OptionalBool(TomlTable table, string key) =>
            !table.TryGetValue(key, out var value) ? null
            : value as bool? ?? throw Invalid(table, key, $"'{key}' must be true or false", null);

        private IReadOnlyList<string> StringArray(TomlTable table, string key, object? value) =>
            value is TomlArray array && array.All(v => v is string)
                ? array.Cast<string>().ToArray()
                : throw Invalid(table, key, $"'{key}' must be an array of strings", null);

        private TomlTable Table(TomlTable parent, string key, object? value) =>
            value as TomlTable ?? throw Invalid(parent, key, $"'{key}' must be a table", null);

        private OrasStagingException Invalid(TomlTable table, string? key, string what, string? action) =>
            new(ErrorCode.ConfigInvalid, $"The registries config {At(table, key)} {what}.",
                action ?? "Fix the entry; see containers-registries.conf(5).");

        /// <summary><c>file:line</c> of a key, or of the table's first key; the file alone when Tomlyn kept no span.</summary>
        private string At(TomlTable table, string? key)
        {
            if (metadata.TryGetProperties(table, out var properties) && properties is not null)
            {
                int? line = null;
                if (key is not null && properties.TryGetProperty(key, out var property) && property?.Span is { } span)
                {
                    line = span.Start.Line;
                }
                else
                {
                    foreach (string name in table.Keys)
                    {
                        if (properties.TryGetProperty(name, out var p) && p?.Span is { } s && (line is null || s.Start.Line < line))
                        {
                            line = s.Start.Line;
                        }
                    }
                }

                if (line is int l)
                {
                    // Spans count lines from 0 (TomlException.Line counts from 1).
                    return $"'{source}' line {l + 1}";
                }
            }

            return $"'{source}'";
        }
    }
}
