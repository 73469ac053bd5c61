using System.Net;
using System.Text;
using OrasStaging.Oci;
using OrasStaging.Oci.Auth;

namespace OrasStaging.Tests.Oci;

[Collection("PATH")]
public sealed class CredentialTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("oci-cred-").FullName;
    private readonly RecordingSink _sink = new();

    public void Dispose() => Directory.Delete(_dir, true);

    private RegistryCredential? Find(string json, string registry, NetworkCredential? explicitCredential = null)
    {
        string path = Path.Combine(_dir, "config.json");
        File.WriteAllText(path, json);
        return new CredentialResolver(new RegistryOptions { DockerConfigPath = path, Credential = explicitCredential }, _sink).Find(registry);
    }

    [Fact]
    public void Anonymous_presents_nothing_even_with_a_credential_and_a_config()
    {
        string path = Path.Combine(_dir, "config.json");
        File.WriteAllText(path, "{\"auths\":{\"ghcr.io\":{\"auth\":\"" + B64("u:p") + "\"}}}");
        var options = new RegistryOptions { DockerConfigPath = path, Credential = new NetworkCredential("me", "pw"), Anonymous = true };
        Assert.Null(new CredentialResolver(options, _sink).Find("ghcr.io"));
        options.Anonymous = false;
        Assert.Equal("me", new CredentialResolver(options, _sink).Find("ghcr.io")?.Username);
    }

    private static string B64(string s) => Convert.ToBase64String(Encoding.UTF8.GetBytes(s));

    [Fact]
    public void Auths_entries_match_with_or_without_scheme_and_docker_hub_uses_its_v1_key()
    {
        string json = $$$"""
        {"auths": {
          "https://ghcr.io": {"auth": "{{{B64("alice:pw1")}}}"},
          "127.0.0.1:5000": {"username": "bob", "password": "pw2"},
          "https://index.docker.io/v1/": {"auth": "{{{B64("carol:pw:with:colons")}}}"},
          "quay.io": {"identitytoken": "refresh-xyz"}
        }}
        """;
        Assert.Equal(("alice", "pw1"), (Find(json, "ghcr.io")!.Username, Find(json, "ghcr.io")!.Password));
        Assert.Equal(("bob", "pw2"), (Find(json, "127.0.0.1:5000")!.Username, Find(json, "127.0.0.1:5000")!.Password));
        var hub = Find(json, "registry-1.docker.io")!;
        Assert.Equal(("carol", "pw:with:colons", true), (hub.Username, hub.Password, hub.Stored));
        var quay = Find(json, "quay.io")!;
        Assert.Equal(("refresh-xyz", (string?)null), (quay.IdentityToken, quay.Password));
        Assert.Null(Find(json, "other.example"));
    }

    [Fact]
    public void Explicit_credential_wins_over_the_config()
    {
        var c = Find("""{"auths": {"ghcr.io": {"auth": "eDp5"}}}""", "ghcr.io", new NetworkCredential("me", "secret"));
        Assert.Equal(("me", "secret", false, "-Credential"), (c!.Username, c.Password, c.Stored, c.Source));
    }

    [Fact]
    public void Invalid_json_is_a_warning_not_a_failure()
    {
        Assert.Null(Find("{ not json", "ghcr.io"));
        Assert.Contains("not valid JSON", string.Join("\n", _sink.Warnings));
    }

    [Fact]
    public void Credential_helpers_and_stores_are_asked_with_the_server_on_stdin()
    {
        if (OperatingSystem.IsWindows())
        {
            return; // the fake helper is a shell script
        }

        string bin = Path.Combine(_dir, "bin");
        Directory.CreateDirectory(bin);
        string log = Path.Combine(_dir, "helper.log");
        void Helper(string name, string body)
        {
            string path = Path.Combine(bin, "docker-credential-" + name);
            File.WriteAllText(path, "#!/bin/sh\n" + body + "\n");
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        Helper("fake", $"read server; echo \"$1 $server\" >> '{log}'; " +
            "case \"$server\" in *ghcr.io*) echo '{\"ServerURL\":\"ghcr.io\",\"Username\":\"helper-user\",\"Secret\":\"helper-secret\"}';; " +
            "*index.docker.io*) echo '{\"Username\":\"<token>\",\"Secret\":\"refresh-tok\"}';; " +
            "*) echo 'credentials not found in native keychain' >&2; exit 1;; esac");
        string oldPath = Environment.GetEnvironmentVariable("PATH") ?? string.Empty;
        Environment.SetEnvironmentVariable("PATH", bin + Path.PathSeparator + oldPath);
        try
        {
            var viaHelpers = Find("""{"credHelpers": {"ghcr.io": "fake"}, "auths": {"ghcr.io": {"auth": "eDp5"}}}""", "ghcr.io")!;
            Assert.Equal(("helper-user", "helper-secret"), (viaHelpers.Username, viaHelpers.Password));
            var viaStore = Find("""{"credsStore": "fake"}""", "registry-1.docker.io")!;
            Assert.Equal(("refresh-tok", (string?)null), (viaStore.IdentityToken, viaStore.Password));
            // The store has nothing for this host: auths is the fallback.
            var fallback = Find("{\"credsStore\": \"fake\", \"auths\": {\"127.0.0.1:5000\": {\"auth\": \"" + B64("u:p") + "\"}}}", "127.0.0.1:5000")!;
            Assert.Equal(("u", "p"), (fallback.Username, fallback.Password));
            Assert.Null(Find("""{"credHelpers": {"ghcr.io": "missing"}}""", "ghcr.io"));
            Assert.Contains("not on PATH", string.Join("\n", _sink.Warnings));
            Assert.Equal(new[] { "get ghcr.io", "get https://index.docker.io/v1/", "get 127.0.0.1:5000" }, File.ReadAllLines(log));
        }
        finally
        {
            Environment.SetEnvironmentVariable("PATH", oldPath);
        }
    }
}
