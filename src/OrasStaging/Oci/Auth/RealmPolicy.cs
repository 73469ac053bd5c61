namespace OrasStaging.Oci.Auth;

/// <summary>Where credentials and token requests may go: https (or loopback), and only the registry's own token service.</summary>
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

    /// <summary>The realm must be https (or loopback) and on the registry's host or a known pair; no user info.</summary>
    public static void ValidateRealm(Uri realm, string registry)
    {
        string registryHost = ImageReference.HostOf(registry).ToLowerInvariant();
        string realmHost = realm.Host.Trim('[', ']').ToLowerInvariant();
        bool loopback = RegistryTransport.IsLoopbackHost(realmHost);
        bool schemeOk = realm.Scheme == Uri.UriSchemeHttps || (realm.Scheme == Uri.UriSchemeHttp && loopback);
        bool hostOk = realmHost == registryHost
            || (loopback && RegistryTransport.IsLoopbackHost(registryHost))
            || KnownRealmPairs.Contains((registryHost, realmHost));
        if (!schemeOk || !hostOk || !string.IsNullOrEmpty(realm.UserInfo))
        {
            throw new OrasStagingException(ErrorCode.AuthenticationFailed,
                $"{registry} points to the token service {realm.Scheme}://{realm.Host}, which is not https on the registry's own host; refusing to use it.",
                "Check that the registry address is right; a registry should not send you elsewhere for tokens.");
        }
    }
}
