using OrasStaging.Oci;
using OrasStaging.Oci.Mirrors;

namespace OrasStaging.Tests.Mirrors;

public sealed class RegistriesConfLocationTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "orasstaging-mirrors-" + Guid.NewGuid().ToString("n")[..8]);

    public RegistriesConfLocationTests() => Directory.CreateDirectory(_root);

    public void Dispose()
    {
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private string Write(string relative, string text)
    {
        string path = Path.Combine(_root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
        return path;
    }

    private static Func<string, string?> Env(params (string Key, string Value)[] values) =>
        key => values.FirstOrDefault(v => v.Key == key).Value;

    [Fact]
    public void ExplicitPathBeatsEnvironmentWhichBeatsUserWhichBeatsSystem()
    {
        const string home = "/home/u";
        string user = Path.Combine(home, ".config", "containers", "registries.conf");
        bool UserExists(string p) => p == user;

        var explicitPath = RegistriesConfLocation.For("/x/mine.conf", Env(("CONTAINERS_REGISTRIES_CONF", "/x/env.conf")), home, false, UserExists);
        Assert.Equal(("/x/mine.conf", true), (explicitPath.MainFile, explicitPath.MainFileRequired));
        Assert.Equal(new[] { "/etc/containers/registries.conf.d", Path.Combine(home, ".config", "containers", "registries.conf.d") }, explicitPath.DropInFolders);

        var fromEnv = RegistriesConfLocation.For(null, Env(("CONTAINERS_REGISTRIES_CONF", "/x/env.conf")), home, false, UserExists);
        Assert.Equal("/x/env.conf", fromEnv.MainFile);
        Assert.True(fromEnv.MainFileRequired);

        var fromUser = RegistriesConfLocation.For(null, Env(), home, false, UserExists);
        Assert.Equal(user, fromUser.MainFile);

        // With the user's file, the system drop-ins are not read (containers-registries.conf.d(5)).
        Assert.Equal(new[] { Path.Combine(home, ".config", "containers", "registries.conf.d") }, fromUser.DropInFolders);

        var fromSystem = RegistriesConfLocation.For(null, Env(), home, false, _ => false);
        Assert.Equal(("/etc/containers/registries.conf", false), (fromSystem.MainFile, fromSystem.MainFileRequired));
        Assert.Equal(2, fromSystem.DropInFolders.Count);
    }

    [Fact]
    public void WindowsUsesProgramData()
    {
        var location = RegistriesConfLocation.For(null, Env(("ProgramData", @"D:\PD")), "/home/u", true, _ => false);
        Assert.Equal(Path.Combine(@"D:\PD", "containers", "registries.conf"), location.MainFile);
        Assert.Equal(Path.Combine(@"D:\PD", "containers", "registries.conf.d"), location.DropInFolders[0]);
    }

    [Fact]
    public void DropInsOverrideByPrefixInOrdinalOrderAndOnlyConfFilesCount()
    {
        string main = Write("etc/registries.conf", """
            unqualified-search-registries = ["main.example.com"]
            [[registry]]
            location = "ghcr.io"
            [[registry.mirror]]
            location = "old-mirror.lab"
            [[registry]]
            location = "quay.io"
            insecure = true
            """);
        Write("etc/registries.conf.d/10-first.conf", """
            [[registry]]
            location = "ghcr.io"
            [[registry.mirror]]
            location = "first-mirror.lab"
            """);
        Write("etc/registries.conf.d/20-second.conf", """
            unqualified-search-registries = ["second.example.com"]
            [[registry]]
            location = "ghcr.io"
            [[registry.mirror]]
            location = "second-mirror.lab"
            [[registry]]
            location = "new.example.com"
            """);
        Write("etc/registries.conf.d/30-ignored.conf.bak", "this is not toml [[[");
        Directory.CreateDirectory(Path.Combine(_root, "etc/registries.conf.d/40-folder.conf"));
        Write("home/registries.conf.d/05-user.conf", "[[registry]]\nlocation = \"quay.io\"\n");

        var location = new RegistriesConfLocation(main, true,
            new[] { Path.Combine(_root, "etc/registries.conf.d"), Path.Combine(_root, "home/registries.conf.d"), Path.Combine(_root, "absent") });
        var conf = location.Load();

        Assert.Equal(new[] { "ghcr.io", "quay.io", "new.example.com" }, conf.Registries.Select(r => r.Prefix));
        Assert.Equal("second-mirror.lab", Assert.Single(conf.Registries[0].Mirrors).Location);

        // The user's drop-in replaced the quay.io entry whole: insecure is not inherited.
        Assert.False(conf.Registries[1].Insecure);
        Assert.Equal(new[] { "second.example.com" }, conf.UnqualifiedSearchRegistries);
        Assert.Equal(new[] { "registries.conf", "10-first.conf", "20-second.conf", "05-user.conf" }, conf.Files.Select(Path.GetFileName));
    }

    [Fact]
    public void MissingOptionalMainFileIsEmptyButARequiredOneIsAnError()
    {
        var optional = new RegistriesConfLocation(Path.Combine(_root, "none.conf"), false, Array.Empty<string>());
        Assert.Empty(optional.Load().Registries);

        var required = new RegistriesConfLocation(Path.Combine(_root, "none.conf"), true, Array.Empty<string>());
        var ex = Assert.Throws<OrasStagingException>(() => required.Load());
        Assert.Equal(ErrorCode.PathNotFound, ex.Code);
        Assert.Contains("none.conf", ex.Message);
    }

    [Fact]
    public void MalformedDropInIsNamed()
    {
        string main = Write("etc/registries.conf", "[[registry]]\nlocation = \"ghcr.io\"\n");
        string bad = Write("etc/registries.conf.d/99-bad.conf", "[[registry]]\nlocation = ghcr.io\n");
        var location = new RegistriesConfLocation(main, true, new[] { Path.Combine(_root, "etc/registries.conf.d") });
        var ex = Assert.Throws<OrasStagingException>(() => location.Load());
        Assert.Equal(ErrorCode.ConfigInvalid, ex.Code);
        Assert.Contains(bad, ex.Message);
        Assert.Contains("line 2", ex.Message);
    }

    [Fact]
    public void EnvironmentVariableFileIsReadThroughLoad()
    {
        string file = Write("env.conf", "[[registry]]\nlocation = \"lab.example.com\"\nblocked = true\n");
        var location = RegistriesConfLocation.For(null, Env(("CONTAINERS_REGISTRIES_CONF", file)), Path.Combine(_root, "home"), false, File.Exists)
            with { DropInFolders = Array.Empty<string>() };
        Assert.True(Assert.Single(location.Load().Registries).Blocked);
        Assert.Equal(ErrorCode.PathNotFound,
            Assert.Throws<OrasStagingException>(() => (location with { MainFile = file + ".missing" }).Load()).Code);
    }
}
