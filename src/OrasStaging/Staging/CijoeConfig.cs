using System.Text.RegularExpressions;
using Tomlyn;
using Tomlyn.Model;

namespace OrasStaging.Staging;

/// <summary>One <c>[system-imaging.images.&lt;name&gt;]</c> entry with an oras source.</summary>
internal sealed record ConfigImage(string Name, string Reference, string Path);

/// <summary>
/// Reads the images table of a cijoe config the way the seed script did: entries with <c>oras.url</c> and
/// <c>disk.path</c>, <c>{{ local.env.NAME }}</c> expanded, names filtered by case-insensitive wildcards.
/// </summary>
internal static class CijoeConfig
{
    private static readonly Regex EnvPattern =
        new(@"\{\{\s*local\.env\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}", RegexOptions.CultureInvariant);

    public static IReadOnlyList<ConfigImage> Read(
        string configPath,
        IReadOnlyCollection<string>? include,
        IReadOnlyCollection<string>? exclude,
        IOperationSink sink,
        Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        string text = IO.FileRules.ReadConfigText(configPath, "the config file", "Give -ConfigPath the path of the cijoe .toml file itself.",
            "Check the path; a relative one is taken from PowerShell's current location.");

        const string syntaxAction = "Fix the syntax; the file is read as TOML 1.1.";
        TomlTable root;
        try
        {
            root = TomlSerializer.Deserialize<TomlTable>(text)
                ?? throw new OrasStagingException(ErrorCode.ConfigInvalid, $"'{configPath}' is empty.",
                    "Add [system-imaging.images.<name>] entries with oras.url and disk.path.");
        }
        catch (OrasStagingException)
        {
            throw;
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
        {
            // Tomlyn reports most syntax errors as TomlException, but some malformed input surfaces as other
            // exception types; all of them mean the same to the user.
            throw new OrasStagingException(ErrorCode.ConfigInvalid, $"'{configPath}' is not valid TOML: {ex.Message}",
                syntaxAction, ex);
        }

        if (!TryTable(root, "system-imaging", out var imaging) || !TryTable(imaging, "images", out var images))
        {
            throw new OrasStagingException(ErrorCode.ConfigInvalid,
                $"'{configPath}' has no [system-imaging.images] table.",
                "Add [system-imaging.images.<name>] entries with oras.url and disk.path.");
        }

        var result = new List<ConfigImage>();
        foreach (var (name, value) in images)
        {
            if (!Matches(name, include, exclude))
            {
                continue;
            }

            if (value is not TomlTable entry)
            {
                sink.Verbose($"Passing over system-imaging.images.{name}: it is not a table.");
                continue;
            }

            if (!TryTable(entry, "oras", out var oras) || !oras.TryGetValue("url", out var urlValue) || urlValue is not string url)
            {
                sink.Verbose($"Passing over system-imaging.images.{name}: it has no oras.url source.");
                continue;
            }

            if (!TryTable(entry, "disk", out var disk) || !disk.TryGetValue("path", out var pathValue) || pathValue is not string path)
            {
                throw new OrasStagingException(ErrorCode.ConfigInvalid,
                    $"system-imaging.images.{name} in '{configPath}' has oras.url but no disk.path.",
                    "Add disk.path: where the image is written.");
            }

            result.Add(new ConfigImage(name, Expand(url, environment, name), ExpandHome(Expand(path, environment, name))));
        }

        return result;
    }

    private static bool TryTable(TomlTable table, string key, out TomlTable child)
    {
        if (table.TryGetValue(key, out var value) && value is TomlTable t)
        {
            child = t;
            return true;
        }

        child = null!;
        return false;
    }

    internal static string Expand(string value, Func<string, string?> environment, string entryName) =>
        EnvPattern.Replace(value, m => environment(m.Groups[1].Value)
            ?? throw new OrasStagingException(ErrorCode.ConfigInvalid,
                $"system-imaging.images.{entryName} uses {{{{ local.env.{m.Groups[1].Value} }}}}, which is not set.",
                $"Set the environment variable {m.Groups[1].Value}."));

    private static string ExpandHome(string path)
    {
        if (path == "~" || path.StartsWith("~/", StringComparison.Ordinal))
        {
            return Environment.GetFolderPath(Environment.SpecialFolder.UserProfile) + path[1..];
        }

        return path;
    }

    /// <summary>
    /// Case-insensitive wildcards (<see cref="OrasStaging.Wildcard"/>, PowerShell's rules, so <c>[!x]</c> is not a
    /// negation as in fnmatch): some include must match, no exclude may.
    /// </summary>
    internal static bool Matches(string name, IReadOnlyCollection<string>? include, IReadOnlyCollection<string>? exclude)
    {
        if (include is { Count: > 0 } && !include.Any(p => OrasStaging.Wildcard.IsMatch(p, name)))
        {
            return false;
        }

        return exclude is not { Count: > 0 } || !exclude.Any(p => OrasStaging.Wildcard.IsMatch(p, name));
    }
}
