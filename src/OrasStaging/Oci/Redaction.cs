using System.Text.RegularExpressions;

namespace OrasStaging.Oci;

/// <summary>
/// Keeps secrets out of every message: signed URLs lose their query string, URLs lose user information, and
/// anything shaped like an Authorization value or a token field is masked. Also the one sanitiser for text a
/// registry chose (<see cref="Untrusted"/>): it reaches terminals and CI logs, so it must not drive either.
/// </summary>
internal static partial class Redaction
{
    [GeneratedRegex(@"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+")]
    private static partial Regex AuthValue();

    [GeneratedRegex(@"(?i)(""?(?:access_token|refresh_token|token|password|identitytoken|auth)""?\s*[:=]\s*""?)[^""&,\s}]+")]
    private static partial Regex TokenField();

    [GeneratedRegex(@"(?i)\b(https?|oras)://([^/\s@]*@)?([^\s?#]*)(\?[^\s#]*)?")]
    private static partial Regex UrlLike();

    // ESC-introduced sequences: CSI (ESC [ ... final), OSC/DCS/APC/PM/SOS strings (up to BEL or ST), or ESC + one char.
    [GeneratedRegex(@"\x1B(?:\[[0-?]*[ -/]*[@-~]?|[\]PX^_][^\x07\x1B]*(?:\x07|\x1B\\)?|.?)", RegexOptions.Singleline)]
    private static partial Regex EscapeSequence();

    // C0/C1 controls (newlines too: one message is one line) and the bidi overrides that reorder what a terminal shows.
    [GeneratedRegex(@"[\x00-\x1F\x7F-\x9F\u200E\u200F\u202A-\u202E\u2066-\u2069]+")]
    private static partial Regex ControlRun();

    // Azure Pipelines logging commands (##vso[...], ##[group]) are recognised anywhere in a line;
    // GitHub workflow commands (::name ...::) at a line start, so a "::" before a command name is broken up
    // (not one inside an IPv6 address such as fe80::1 or [::1]).
    [GeneratedRegex(@"##(?=vso\[|\[)", RegexOptions.IgnoreCase)]
    private static partial Regex AzureCommand();

    [GeneratedRegex(@"(?<![0-9A-Za-z:\[])::(?=[A-Za-z])")]
    private static partial Regex WorkflowCommand();

    /// <summary>
    /// Registry-chosen text (a Warning header, an error body, a layer title or media type) made safe to print:
    /// escape sequences removed, control characters replaced by a space, CI logging commands neutralised
    /// (<c>##vso[</c> becomes <c># #vso[</c>, <c>::set-env</c> becomes <c>: :set-env</c>).
    /// </summary>
    public static string Untrusted(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return string.Empty;
        }

        string result = EscapeSequence().Replace(text, string.Empty);
        result = ControlRun().Replace(result, " ");
        result = AzureCommand().Replace(result, "# #");
        return WorkflowCommand().Replace(result, ": :");
    }

    /// <summary>scheme://host/path with the query replaced by "?…" and no user information.</summary>
    public static string Url(Uri? uri)
    {
        if (uri is null)
        {
            return string.Empty;
        }

        if (!uri.IsAbsoluteUri)
        {
            return uri.OriginalString.Split('?')[0];
        }

        string text = uri.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped);
        return string.IsNullOrEmpty(uri.Query) ? text : text + "?…";
    }

    /// <summary>Masks secrets inside free text (server error bodies, exception messages), sanitised as <see cref="Untrusted"/>.</summary>
    public static string Text(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return string.Empty;
        }

        string result = AuthValue().Replace(text, "$1 ***");
        result = TokenField().Replace(result, "$1***");
        result = UrlLike().Replace(result, m =>
            m.Groups[1].Value + "://" + m.Groups[3].Value + (m.Groups[4].Success ? "?…" : string.Empty));
        return Untrusted(result);
    }
}
