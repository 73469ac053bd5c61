using System.Text.RegularExpressions;

namespace OrasStaging.Commands.Completion;

/// <summary>
/// What a half-typed reference asks for: the registry and repository to list, the tag typed so far, and the
/// text to put back in front of each tag (exactly as the user typed it, <c>oras://</c> or not). The wire names
/// (Docker Hub's host, <c>library/</c>) come from <see cref="Oci.ImageReference"/> when the tags are listed.
/// </summary>
internal sealed record TagQuery(string Prefix, string Host, string Repository, string TagPrefix)
{
    // The distribution spec's repository name grammar (path components joined by '/').
    private static readonly Regex NamePattern = new(
        "^[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*)*$",
        RegexOptions.CultureInvariant);

    private static readonly Regex TagPattern = new("^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$", RegexOptions.CultureInvariant);

    public static bool TryParse(string word, out TagQuery query)
    {
        query = null!;
        string rest = word;
        if (rest.StartsWith("oras://", StringComparison.OrdinalIgnoreCase))
        {
            rest = rest["oras://".Length..];
        }

        if (rest.Contains('@'))
        {
            return false; // A digest is already pinned; there is no tag to complete.
        }

        int slash = rest.IndexOf('/');
        if (slash <= 0)
        {
            return false;
        }

        string host = rest[..slash];
        string path = rest[(slash + 1)..];
        if (!LooksLikeHost(host))
        {
            return false;
        }

        int lastSlash = path.LastIndexOf('/');
        int colon = path.IndexOf(':', lastSlash + 1);
        string repository = colon >= 0 ? path[..colon] : path;
        string tagPrefix = colon >= 0 ? path[(colon + 1)..] : string.Empty;
        if (!NamePattern.IsMatch(repository) || (tagPrefix.Length > 0 && !TagPattern.IsMatch(tagPrefix)))
        {
            return false;
        }

        string prefix = word[..(word.Length - path.Length + repository.Length)];
        query = new TagQuery(prefix, host, repository, tagPrefix);
        return true;
    }

    private static bool LooksLikeHost(string host) =>
        host.Contains('.') || host.Contains(':') || host.Equals("localhost", StringComparison.OrdinalIgnoreCase);
}
