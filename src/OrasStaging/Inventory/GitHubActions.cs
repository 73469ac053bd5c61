using System.Text;

namespace OrasStaging.Inventory;

/// <summary>
/// GitHub Actions workflow commands and the job summary, with everything that came from a registry or a file name
/// escaped, so a crafted tag, title or annotation cannot start a workflow command of its own (GitHub's
/// "Workflow commands" rules: data escapes <c>%</c>, CR and LF; property values also escape <c>:</c> and <c>,</c>).
/// Produces lines; the caller writes them to standard output.
/// </summary>
internal static class GitHubActions
{
    public const string EndGroup = "::endgroup::";

    /// <summary>True when running as a GitHub Actions step (<c>GITHUB_ACTIONS=true</c>).</summary>
    public static bool IsActive(Func<string, string?>? environment = null) =>
        string.Equals((environment ?? Environment.GetEnvironmentVariable)("GITHUB_ACTIONS"), "true", StringComparison.Ordinal);

    /// <summary>A command's message: <c>%</c> → <c>%25</c>, CR → <c>%0D</c>, LF → <c>%0A</c>, other control characters dropped.</summary>
    public static string EscapeData(string? value) => Escape(value, property: false);

    /// <summary>A command property's value: as <see cref="EscapeData"/>, and <c>:</c> → <c>%3A</c>, <c>,</c> → <c>%2C</c>.</summary>
    public static string EscapeProperty(string? value) => Escape(value, property: true);

    /// <summary><c>::error title=…,file=…,line=…::message</c>; absent properties are left out.</summary>
    public static string Error(string message, string? title = null, string? file = null, int? line = null) =>
        Command("error", message, ("title", title), ("file", file), ("line", line?.ToString(System.Globalization.CultureInfo.InvariantCulture)));

    public static string Warning(string message, string? title = null) => Command("warning", message, ("title", title));

    /// <summary><c>::group::title</c>; close it with <see cref="EndGroup"/> (groups do not nest).</summary>
    public static string Group(string title) => "::group::" + EscapeData(title);

    /// <summary>A GitHub-flavoured markdown table; every cell is escaped with <see cref="EscapeCell"/>.</summary>
    public static string Table(IReadOnlyList<string> headers, IEnumerable<IReadOnlyList<string?>> rows)
    {
        var text = new StringBuilder();
        text.Append("| ").Append(string.Join(" | ", headers.Select(EscapeCell))).Append(" |\n");
        text.Append('|').Append(string.Concat(headers.Select(_ => " --- |"))).Append('\n');
        foreach (var row in rows)
        {
            text.Append("| ").Append(string.Join(" | ", headers.Select((_, i) => EscapeCell(i < row.Count ? row[i] : null)))).Append(" |\n");
        }

        return text.ToString();
    }

    /// <summary>The job-summary section for staged images: one row per image.</summary>
    public static string StagedImagesSummary(IEnumerable<StagedImage> images)
    {
        var rows = images.Select(i => (IReadOnlyList<string?>)new[]
        {
            i.Name.Length > 0 ? i.Name : System.IO.Path.GetFileName(i.Path),
            i.Path,
            i.Format,
            i.Digest,
            i.Reference,
            i.Skipped ? "skipped: " + (i.SkipReason ?? "already staged") : "staged",
        });
        return "### Staged disk images\n\n" + Table(new[] { "Name", "Path", "Format", "Digest", "Reference", "Result" }, rows) + "\n";
    }

    /// <summary>
    /// A markdown table cell: control characters (CR and LF included) become spaces, <c>\</c> and <c>|</c> are
    /// backslash-escaped (a lone <c>\</c> before our <c>|</c> would otherwise escape it), and <c>&lt;</c> <c>&gt;</c>
    /// <c>&amp;</c> become entities so no HTML reaches the page.
    /// </summary>
    public static string EscapeCell(string? value)
    {
        if (string.IsNullOrEmpty(value))
        {
            return string.Empty;
        }

        var text = new StringBuilder(value.Length);
        foreach (char c in value)
        {
            switch (c)
            {
                case '\\': text.Append(@"\\"); break;
                case '|': text.Append(@"\|"); break;
                case '<': text.Append("&lt;"); break;
                case '>': text.Append("&gt;"); break;
                case '&': text.Append("&amp;"); break;
                default: text.Append(char.IsControl(c) ? ' ' : c); break;
            }
        }

        return text.ToString().Trim();
    }

    /// <summary>
    /// Appends to <c>$GITHUB_STEP_SUMMARY</c>. Appending is how GitHub defines this file, so it does not go through
    /// PartialFile. A summary that cannot be written must not fail the staging: the error comes back for a warning.
    /// </summary>
    public static bool TryAppendSummary(string markdown, out string? error, Func<string, string?>? environment = null)
    {
        error = null;
        string? path = (environment ?? Environment.GetEnvironmentVariable)("GITHUB_STEP_SUMMARY");
        if (string.IsNullOrWhiteSpace(path))
        {
            error = "GITHUB_STEP_SUMMARY is not set.";
            return false;
        }

        try
        {
            File.AppendAllText(path, markdown, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or System.Security.SecurityException or ArgumentException or NotSupportedException)
        {
            error = $"Cannot append to the job summary '{path}': {ex.Message}";
            return false;
        }
    }

    private static string Command(string name, string message, params (string Key, string? Value)[] properties)
    {
        var present = properties.Where(p => !string.IsNullOrEmpty(p.Value)).Select(p => p.Key + "=" + EscapeProperty(p.Value)).ToList();
        return "::" + name + (present.Count > 0 ? " " + string.Join(",", present) : string.Empty) + "::" + EscapeData(message);
    }

    private static string Escape(string? value, bool property)
    {
        if (string.IsNullOrEmpty(value))
        {
            return string.Empty;
        }

        var text = new StringBuilder(value.Length);
        foreach (char c in value)
        {
            switch (c)
            {
                case '%': text.Append("%25"); break;
                case '\r': text.Append("%0D"); break;
                case '\n': text.Append("%0A"); break;
                case ':' when property: text.Append("%3A"); break;
                case ',' when property: text.Append("%2C"); break;
                default:
                    if (!char.IsControl(c) && c is not ('\u2028' or '\u2029' or '\u0085'))
                    {
                        text.Append(c);
                    }

                    break;
            }
        }

        return text.ToString();
    }
}
