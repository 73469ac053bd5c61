using System.Text.RegularExpressions;

namespace OrasStaging.Oci;

/// <summary>
/// A parsed <c>oras://host[:port]/name[:tag][@digest]</c> reference. <see cref="Registry"/> is the host as used on
/// the wire, so Docker Hub names are already normalised to <c>registry-1.docker.io</c> and <c>library/</c>.
/// </summary>
public sealed partial record ImageReference(string Registry, string Repository, string? Tag, string? Digest)
{
    public const string Scheme = "oras://";
    public const string DockerHubWireHost = "registry-1.docker.io";

    // The reference grammar, shared with tab completion. \z, not $: '$' also matches before a final newline.
    // Distribution spec, "Pulling manifests": path components joined by '/'.
    [GeneratedRegex(@"\A[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*\z", RegexOptions.CultureInvariant)]
    private static partial Regex RepositoryPattern();

    [GeneratedRegex(@"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\z", RegexOptions.CultureInvariant)]
    private static partial Regex TagPattern();

    [GeneratedRegex(@"\A(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\z", RegexOptions.CultureInvariant)]
    private static partial Regex HostPattern();

    /// <summary>A repository name as the distribution spec allows it (lower case, components joined by '/').</summary>
    internal static bool IsRepositoryName(string name) => RepositoryPattern().IsMatch(name);

    /// <summary>A tag: letters, digits, _ . -, at most 128, not starting with . or -.</summary>
    internal static bool IsTag(string tag) => TagPattern().IsMatch(tag);

    /// <summary>host[:port], a DNS name or a bracketed IPv6 address.</summary>
    internal static bool IsHost(string host) => HostPattern().IsMatch(host);

    /// <summary>
    /// docker's rule for the first path component: a registry when it has a '.' or a ':', is localhost, or is a
    /// bracketed address; otherwise the name is on Docker Hub.
    /// </summary>
    internal static bool NamesRegistry(string first) =>
        first.Contains('.') || first.Contains(':') || first.Equals("localhost", StringComparison.OrdinalIgnoreCase) || first.StartsWith('[');

    public static ImageReference Parse(string reference)
    {
        if (!TryParse(reference, out var result, out var error))
        {
            throw new OrasStagingException(ErrorCode.ReferenceInvalid, error!,
                "Write the reference as oras://host[:port]/name:tag or oras://host[:port]/name@sha256:<64 hex digits>.");
        }

        return result!;
    }

    public static bool TryParse(string reference, out ImageReference? result, out string? error)
    {
        result = null;
        error = null;
        string text = (reference ?? string.Empty).Trim();
        string shown = Redaction.Text(text);
        if (text.Length == 0)
        {
            error = "The reference is empty.";
            return false;
        }

        if (text.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            text = text[Scheme.Length..];
        }
        else if (text.Contains("://", StringComparison.Ordinal))
        {
            error = $"The reference '{shown}' has a scheme other than oras://.";
            return false;
        }

        if (text.Contains('@') && text.IndexOf('@') < text.IndexOf('/'))
        {
            error = $"The reference '{shown}' carries user information; pass credentials with -Credential instead.";
            return false;
        }

        string? digest = null;
        int at = text.IndexOf('@');
        if (at >= 0)
        {
            digest = text[(at + 1)..];
            text = text[..at];
            if (!Oci.Digest.IsValid(digest))
            {
                error = $"The digest '{digest}' in '{shown}' is not a sha256 or sha512 digest (algorithm:lower-case hex).";
                return false;
            }
        }

        string registry;
        string remainder;
        int slash = text.IndexOf('/');
        string first = slash < 0 ? text : text[..slash];
        if (slash >= 0 && NamesRegistry(first))
        {
            registry = first;
            remainder = text[(slash + 1)..];
        }
        else
        {
            registry = "docker.io";
            remainder = text;
        }

        if (!HostPattern().IsMatch(registry))
        {
            error = $"The registry '{registry}' in '{shown}' is not a valid host[:port].";
            return false;
        }

        string? tag = null;
        int lastSlash = remainder.LastIndexOf('/');
        int colon = remainder.IndexOf(':', lastSlash + 1);
        if (colon >= 0)
        {
            tag = remainder[(colon + 1)..];
            remainder = remainder[..colon];
            if (!TagPattern().IsMatch(tag))
            {
                error = $"The tag '{tag}' in '{shown}' is not valid (letters, digits, _ . -, at most 128, not starting with . or -).";
                return false;
            }
        }

        registry = registry.ToLowerInvariant();
        if (registry is "docker.io" or "index.docker.io" or "registry.hub.docker.com")
        {
            registry = DockerHubWireHost;
        }

        if (registry == DockerHubWireHost && remainder.Length > 0 && !remainder.Contains('/'))
        {
            remainder = "library/" + remainder;
        }

        if (remainder.Length == 0 || !RepositoryPattern().IsMatch(remainder))
        {
            error = $"The repository name '{remainder}' in '{shown}' is not valid (lower-case letters, digits and . _ __ - separators, components joined by /).";
            return false;
        }

        if (remainder.Length + registry.Length + 1 > 255)
        {
            error = $"The name in '{shown}' is longer than 255 characters.";
            return false;
        }

        if (tag is null && digest is null)
        {
            error = $"The reference '{shown}' has neither a tag nor a digest. Did you mean '{Scheme}{registry}/{remainder}:latest'?";
            return false;
        }

        result = new ImageReference(registry, remainder, tag, digest);
        return true;
    }

    /// <summary>The canonical form without <c>oras://</c>.</summary>
    public override string ToString() =>
        Registry + "/" + Repository + (Tag is null ? string.Empty : ":" + Tag) + (Digest is null ? string.Empty : "@" + Digest);

    /// <summary>The host of host[:port], without the port and the brackets of an IPv6 address.</summary>
    internal static string HostOf(string registry)
    {
        if (registry.StartsWith('['))
        {
            int end = registry.IndexOf(']');
            return registry[1..end];
        }

        int colon = registry.LastIndexOf(':');
        return colon >= 0 ? registry[..colon] : registry;
    }
}
