namespace OrasStaging.Oci.Auth;

/// <summary>Where credentials and token requests may go: https (or loopback); with credentials, only the registry's own token service.</summary>
internal static class RealmPolicy
{
    private static readonly HashSet<(string, string)> KnownRealmPairs = new()
    {
        (ImageReference.DockerHubWireHost, "auth.docker.io"),
    };

    /// <summary>Credentials never travel over plain http, except to a loopback host (a local test registry).</summary>
    public static void EnsureCredentialsAllowed(Uri target, string registry)
    {
        if (target.Scheme != Uri.UriSchemeHttps && !RegistryTransport.IsLoopbackHost(target.Host))
        {
            throw new OrasStagingException(ErrorCode.AuthenticationFailed,
                $"Refusing to send credentials for {registry} over plain http to a host that is not loopback.",
                "Use https (drop -PlainHttp), or use anonymous access.");
        }
    }

    /// <summary>
    /// The realm must be https (or loopback http) and carry no user information, always. It must also be on the
    /// registry's own host (or a known pair) when a credential would be sent to it; an anonymous token request
    /// carries no secret, so a realm elsewhere is fine then (registry.gitlab.com's realm is gitlab.com, as docker
    /// and oras-go accept). The error names the rule that refused.
    /// </summary>
    public static void ValidateRealm(Uri realm, string registry, bool sendsCredential = true)
    {
        string registryHost = ImageReference.HostOf(registry).ToLowerInvariant();
        string realmHost = realm.Host.Trim('[', ']').ToLowerInvariant();
        bool loopback = RegistryTransport.IsLoopbackHost(realmHost);
        string shown = $"{realm.Scheme}://{realm.Host}";
        if (!string.IsNullOrEmpty(realm.UserInfo))
        {
            Refuse($"{registry} points to the token service {shown} with user information in its address; refusing to use it.");
        }

        if (!(realm.Scheme == Uri.UriSchemeHttps || (realm.Scheme == Uri.UriSchemeHttp && loopback)))
        {
            Refuse($"{registry} points to the token service {shown}, which is not https (only a loopback host may use http); refusing to use it.");
        }

        bool hostOk = realmHost == registryHost
            || (loopback && RegistryTransport.IsLoopbackHost(registryHost))
            || KnownRealmPairs.Contains((registryHost, realmHost));
        if (sendsCredential && !hostOk)
        {
            Refuse($"{registry} points to the token service {shown}, which is not on the registry's own host; refusing to send credentials there (anonymous token requests may go to another host).");
        }
    }

    private static void Refuse(string message) =>
        throw new OrasStagingException(ErrorCode.AuthenticationFailed, message,
            "Check that the registry address is right; a registry should not send you elsewhere for tokens.");
}
