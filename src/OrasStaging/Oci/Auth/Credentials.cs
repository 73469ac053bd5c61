using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;

namespace OrasStaging.Oci.Auth;

/// <summary>What to present to a registry. Either a password or an identity (refresh) token.</summary>
internal sealed record RegistryCredential(string Username, string? Password, string? IdentityToken, string Source, bool Stored)
{
    public override string ToString() => $"{Username} ({Source})"; // never the secret
}

/// <summary>
/// Finds credentials for a registry: -Credential first, then docker's config.json (credHelpers, credsStore,
/// auths with auth/username/password/identitytoken); nothing means anonymous.
/// </summary>
internal sealed class CredentialResolver
{
    private const string DockerHubKey = "https://index.docker.io/v1/";
    private static readonly TimeSpan HelperTimeout = TimeSpan.FromSeconds(15);
    private readonly RegistryOptions _options;
    private readonly IOperationSink _sink;

    public CredentialResolver(RegistryOptions options, IOperationSink sink)
    {
        _options = options;
        _sink = sink;
    }

    public RegistryCredential? Find(string registry)
    {
        if (_options.Anonymous)
        {
            return null;
        }

        if (_options.Credential is NetworkCredential c && !string.IsNullOrEmpty(c.UserName))
        {
            return new RegistryCredential(c.UserName, c.Password, null, "-Credential", Stored: false);
        }

        string? path = ConfigPath(_options.DockerConfigPath);
        if (path is null)
        {
            return null;
        }

        // Like docker: a config that cannot be read or parsed (root-owned after 'sudo docker login', a folder,
        // half-written JSON) is warned about, and the pull goes on anonymously; it never fails a public pull.
        string json;
        try
        {
            if (Directory.Exists(path))
            {
                _sink.Warning($"Ignoring the docker config '{path}': it is a folder, not a file; going on anonymously.");
                return null;
            }

            if (!File.Exists(path))
            {
                return null;
            }

            json = File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            _sink.Warning($"Ignoring the docker config '{path}': it cannot be read ({ex.Message}); going on anonymously.");
            return null;
        }

        try
        {
            return FromDockerConfig(json, registry, path);
        }
        catch (JsonException)
        {
            _sink.Warning($"Ignoring the docker config '{path}': it is not valid JSON; going on anonymously.");
            return null;
        }
    }

    public static string? ConfigPath(string? explicitPath)
    {
        if (!string.IsNullOrEmpty(explicitPath))
        {
            return Directory.Exists(explicitPath) ? Path.Combine(explicitPath, "config.json") : explicitPath;
        }

        string? dir = Environment.GetEnvironmentVariable("DOCKER_CONFIG");
        if (string.IsNullOrEmpty(dir))
        {
            string home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            if (string.IsNullOrEmpty(home))
            {
                return null;
            }

            dir = Path.Combine(home, ".docker");
        }

        return Path.Combine(dir, "config.json");
    }

    /// <summary>docker's key normalisation: drop the scheme and any path, lower-case the host.</summary>
    internal static string NormalizeKey(string key)
    {
        string k = key.Trim();
        int scheme = k.IndexOf("://", StringComparison.Ordinal);
        if (scheme >= 0)
        {
            k = k[(scheme + 3)..];
        }

        int slash = k.IndexOf('/');
        if (slash >= 0)
        {
            k = k[..slash];
        }

        k = k.ToLowerInvariant();
        return k is "index.docker.io" or "docker.io" or "registry.hub.docker.com" ? ImageReference.DockerHubWireHost : k;
    }

    internal RegistryCredential? FromDockerConfig(string json, string registry, string sourcePath)
    {
        using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { AllowTrailingCommas = true, CommentHandling = JsonCommentHandling.Skip });
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            _sink.Warning($"Ignoring the docker config '{sourcePath}': it is a JSON {root.ValueKind}, not an object; going on anonymously.");
            return null;
        }

        string wanted = NormalizeKey(registry);
        string serverUrl = wanted == ImageReference.DockerHubWireHost ? DockerHubKey : registry;

        if (root.TryGetProperty("credHelpers", out var helpers) && helpers.ValueKind == JsonValueKind.Object)
        {
            foreach (var entry in helpers.EnumerateObject())
            {
                if (NormalizeKey(entry.Name) == wanted && entry.Value.ValueKind == JsonValueKind.String)
                {
                    return FromHelper(entry.Value.GetString()!, serverUrl);
                }
            }
        }

        if (root.TryGetProperty("credsStore", out var store) && store.ValueKind == JsonValueKind.String
            && !string.IsNullOrEmpty(store.GetString()))
        {
            var fromStore = FromHelper(store.GetString()!, serverUrl);
            if (fromStore is not null)
            {
                return fromStore;
            }
        }

        if (root.TryGetProperty("auths", out var auths) && auths.ValueKind == JsonValueKind.Object)
        {
            foreach (var entry in auths.EnumerateObject())
            {
                if (NormalizeKey(entry.Name) != wanted || entry.Value.ValueKind != JsonValueKind.Object)
                {
                    continue;
                }

                string? user = Str(entry.Value, "username");
                string? password = Str(entry.Value, "password");
                string? identity = Str(entry.Value, "identitytoken");
                if (Str(entry.Value, "auth") is { Length: > 0 } auth)
                {
                    string decoded;
                    try
                    {
                        decoded = Encoding.UTF8.GetString(Convert.FromBase64String(auth));
                    }
                    catch (FormatException)
                    {
                        _sink.Warning($"Ignoring the 'auth' entry for {wanted} in '{sourcePath}': it is not base64.");
                        continue;
                    }

                    int colon = decoded.IndexOf(':');
                    if (colon > 0)
                    {
                        user = decoded[..colon];
                        password = decoded[(colon + 1)..];
                    }
                }

                if (!string.IsNullOrEmpty(identity))
                {
                    return new RegistryCredential(user ?? "<token>", null, identity, "docker config identitytoken", Stored: true);
                }

                if (!string.IsNullOrEmpty(user))
                {
                    return new RegistryCredential(user, password, null, "docker config auths", Stored: true);
                }
            }
        }

        return null;
    }

    private static string? Str(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    /// <summary>
    /// The helper's full path from PATH's absolute folders only. Process.Start with a bare name would look in the
    /// working directory (and the application's folder) first, so a file dropped in the current folder would run
    /// and receive the registry URL; the qemu-img lookup follows the same rule. On Windows, PATHEXT's extensions.
    /// </summary>
    internal static string? FindOnPath(string program)
    {
        if (program.IndexOfAny(new[] { '/', '\\' }) >= 0)
        {
            return null; // a name from the config, never a path
        }

        string[] extensions = OperatingSystem.IsWindows()
            ? (Environment.GetEnvironmentVariable("PATHEXT") ?? ".COM;.EXE;.BAT;.CMD").Split(';', StringSplitOptions.RemoveEmptyEntries)
            : new[] { string.Empty };
        foreach (string entry in (Environment.GetEnvironmentVariable("PATH") ?? string.Empty).Split(Path.PathSeparator))
        {
            string dir = entry.Trim().Trim('"');
            if (dir.Length == 0 || !Path.IsPathFullyQualified(dir))
            {
                continue; // "" and "." mean the working directory
            }

            foreach (string extension in extensions)
            {
                string candidate = Path.Combine(dir, program + extension);
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }
        }

        return null;
    }

    /// <summary>docker-credential-&lt;name&gt; get, with the server URL on stdin and JSON on stdout.</summary>
    internal RegistryCredential? FromHelper(string name, string serverUrl)
    {
        string program = "docker-credential-" + name;
        string? resolved = FindOnPath(program);
        if (resolved is null)
        {
            _sink.Warning($"The credential helper '{program}' named in the docker config is not on PATH; going on without it.");
            return null;
        }

        var psi = new ProcessStartInfo(resolved, "get")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        try
        {
            using var process = Process.Start(psi);
            if (process is null)
            {
                return null;
            }

            process.StandardInput.Write(serverUrl);
            process.StandardInput.Close();
            var output = process.StandardOutput.ReadToEndAsync();
            var error = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit((int)HelperTimeout.TotalMilliseconds))
            {
                try
                {
                    process.Kill(entireProcessTree: true);
                }
                catch (InvalidOperationException)
                {
                }

                _sink.Warning($"The credential helper '{program}' did not answer within {HelperTimeout.TotalSeconds} s; going on without it.");
                return null;
            }

            if (process.ExitCode != 0)
            {
                _sink.Verbose($"The credential helper '{program}' has no credentials for {serverUrl}.");
                return null;
            }

            using var doc = JsonDocument.Parse(output.GetAwaiter().GetResult());
            string? user = Str(doc.RootElement, "Username");
            string? secret = Str(doc.RootElement, "Secret");
            if (string.IsNullOrEmpty(secret))
            {
                return null;
            }

            return user == "<token>"
                ? new RegistryCredential(user, null, secret, $"credential helper '{name}'", Stored: true)
                : new RegistryCredential(user ?? string.Empty, secret, null, $"credential helper '{name}'", Stored: true);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            _sink.Warning($"The credential helper '{program}' named in the docker config is not on PATH; going on without it.");
            return null;
        }
        catch (JsonException)
        {
            _sink.Warning($"The credential helper '{program}' answered with something other than JSON; going on without it.");
            return null;
        }
    }
}
