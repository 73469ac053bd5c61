using OrasStaging.Oci;

namespace OrasStaging.Commands.Completion;

/// <summary>
/// What a half-typed reference asks for: the registry and repository to list, the tag typed so far, and the
/// text to put back in front of each tag (exactly as the user typed it, <c>oras://</c> or not). The wire names
/// (Docker Hub's host, <c>library/</c>) come from <see cref="Oci.ImageReference"/> when the tags are listed.
/// </summary>
internal sealed record TagQuery(string Prefix, string Host, string Repository, string TagPrefix)
{
    public static bool TryParse(string word, out TagQuery query)
    {
        query = null!;
        string rest = word;
        if (rest.StartsWith(ImageReference.Scheme, StringComparison.OrdinalIgnoreCase))
        {
            rest = rest[ImageReference.Scheme.Length..];
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
        if (!ImageReference.NamesRegistry(host) || !ImageReference.IsHost(host))
        {
            return false;
        }

        int lastSlash = path.LastIndexOf('/');
        int colon = path.IndexOf(':', lastSlash + 1);
        string repository = colon >= 0 ? path[..colon] : path;
        string tagPrefix = colon >= 0 ? path[(colon + 1)..] : string.Empty;
        if (!ImageReference.IsRepositoryName(repository) || (tagPrefix.Length > 0 && !ImageReference.IsTag(tagPrefix)))
        {
            return false;
        }

        string prefix = word[..(word.Length - path.Length + repository.Length)];
        query = new TagQuery(prefix, host, repository, tagPrefix);
        return true;
    }

    /// <summary>
    /// The completions for a tag list the registry chose: only a tag that matches the OCI tag grammar is offered,
    /// and always quoted (the user's quote, else single quotes), so nothing it sends can become code on the command line.
    /// </summary>
    public IEnumerable<(string Text, string Tag)> Offer(string quote, IEnumerable<string> tags)
    {
        string q = quote.Length == 0 ? "'" : quote;
        return tags
            .Where(t => ImageReference.IsTag(t) && t.StartsWith(TagPrefix, StringComparison.Ordinal))
            .Distinct(StringComparer.Ordinal)
            .OrderBy(t => t, StringComparer.Ordinal)
            .Select(t => (q + Prefix + ":" + t + q, t));
    }
}
