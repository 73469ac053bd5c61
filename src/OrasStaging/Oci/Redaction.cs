using System.Text.RegularExpressions;

namespace OrasStaging.Oci;

/// <summary>
/// Keeps secrets out of every message: signed URLs lose their query string, URLs lose user information, and
/// anything shaped like an Authorization value or a token field is masked.
/// </summary>
internal static partial class Redaction
{
    [GeneratedRegex(@"(?i)\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+")]
    private static partial Regex AuthValue();

    [GeneratedRegex(@"(?i)(""?(?:access_token|refresh_token|token|password|identitytoken|auth)""?\s*[:=]\s*""?)[^""&,\s}]+")]
    private static partial Regex TokenField();

    [GeneratedRegex(@"(?i)\b(https?|oras)://([^/\s@]*@)?([^\s?#]*)(\?[^\s#]*)?")]
    private static partial Regex UrlLike();

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

    /// <summary>Masks secrets inside free text (server error bodies, exception messages).</summary>
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
        return result;
    }
}
