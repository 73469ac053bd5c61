using OrasStaging.Oci;
using OrasStaging.Oci.Mirrors;

namespace OrasStaging.Tests.Mirrors;

public class RegistriesConfTests
{
    private static RegistriesConf Parse(string toml, string name = "test.conf") => RegistriesConfFile.Parse(toml, name);

    private static string? Find(RegistriesConf conf, string reference) =>
        conf.Find(RegistriesConf.NameOf(ImageReference.Parse(reference)))?.Prefix;

    [Fact]
    public void ReadsTheManPageExample()
    {
        var conf = Parse("""
            unqualified-search-registries = ["example.com"]

            [[registry]]
            prefix = "example.com/foo"
            insecure = false
            blocked = false
            location = "internal-registry-for-example.com/bar"

            [[registry.mirror]]
            location = "example-mirror-0.local/mirror-for-foo"

            [[registry.mirror]]
            location = "example-mirror-1.local/mirrors/foo/"
            insecure = true
            pull-from-mirror = "digest-only"
            """);
        var entry = Assert.Single(conf.Registries);
        Assert.Equal("example.com/foo", entry.Prefix);
        Assert.Equal("internal-registry-for-example.com/bar", entry.Location);
        Assert.Equal(new[] { "example-mirror-0.local/mirror-for-foo", "example-mirror-1.local/mirrors/foo" }, entry.Mirrors.Select(m => m.Location));
        Assert.Equal(new[] { false, true }, entry.Mirrors.Select(m => m.Insecure));
        Assert.Equal(new[] { PullFromMirror.Unset, PullFromMirror.DigestOnly }, entry.Mirrors.Select(m => m.PullFromMirror));
        Assert.Equal(new[] { "example.com" }, conf.UnqualifiedSearchRegistries);
        Assert.Equal("'test.conf' line 4", entry.DefinedAt);
        Assert.Equal("'test.conf' line 13", entry.Mirrors[1].DefinedAt);
    }

    [Fact]
    public void PrefixDefaultsToLocation()
    {
        var conf = Parse("[[registry]]\nlocation = \"registry.example.com:5000\"\ninsecure = true\n");
        var entry = Assert.Single(conf.Registries);
        Assert.Equal("registry.example.com:5000", entry.Prefix);
        Assert.True(entry.Insecure);
    }

    [Fact]
    public void LongestPrefixWins()
    {
        var conf = Parse("""
            [[registry]]
            location = "ghcr.io"
            [[registry]]
            location = "ghcr.io/acme"
            [[registry]]
            location = "ghcr.io/acme/images"
            """);
        Assert.Equal("ghcr.io/acme/images", Find(conf, "ghcr.io/acme/images/disk:1"));
        Assert.Equal("ghcr.io/acme", Find(conf, "ghcr.io/acme/other:1"));
        Assert.Equal("ghcr.io", Find(conf, "ghcr.io/someone/x:1"));

        // A prefix matches at a separator only: "ghcr.io/acme" does not cover "ghcr.io/acmecorp".
        Assert.Equal("ghcr.io", Find(conf, "ghcr.io/acmecorp/x:1"));
        Assert.Null(Find(conf, "quay.io/acme/x:1"));
    }

    [Fact]
    public void PrefixMayIncludeTheTag()
    {
        var conf = Parse("[[registry]]\nprefix = \"ghcr.io/acme/disk:1\"\nlocation = \"pinned.example.com/disk:1\"\n[[registry]]\nlocation = \"ghcr.io/acme\"\n");
        Assert.Equal("ghcr.io/acme/disk:1", Find(conf, "ghcr.io/acme/disk:1"));
        Assert.Equal("ghcr.io/acme", Find(conf, "ghcr.io/acme/disk:10"));
    }

    [Fact]
    public void WildcardPrefixMatchesAnyDepthOfSubdomainButNotTheDomain()
    {
        var conf = Parse("[[registry]]\nprefix = \"*.example.com\"\ninsecure = true\n");
        Assert.Equal("*.example.com", Find(conf, "a.example.com/x:1"));
        Assert.Equal("*.example.com", Find(conf, "b.a.example.com:5000/x:1"));
        Assert.Null(Find(conf, "example.com/x:1"));
        Assert.Null(Find(conf, "notexample.com/x:1"));
        Assert.Null(Find(conf, "a.example.com.evil.net/x:1"));
        Assert.Equal(string.Empty, conf.Registries[0].Location);
    }

    [Fact]
    public void ExactHostBeatsWildcardOfTheSameLengthAndLongerPathBeatsBoth()
    {
        var conf = Parse("""
            [[registry]]
            prefix = "*.example.com"
            insecure = true
            [[registry]]
            location = "reg.example.com"
            [[registry]]
            location = "reg.example.com/team"
            """);
        Assert.Equal("reg.example.com", Find(conf, "reg.example.com/x:1"));
        Assert.Equal("reg.example.com/team", Find(conf, "reg.example.com/team/x:1"));
        Assert.Equal("*.example.com", Find(conf, "other.example.com/x:1"));
    }

    [Fact]
    public void RewriteReplacesThePrefixWithTheLocation()
    {
        var conf = Parse("[[registry]]\nprefix = \"example.com/foo\"\nlocation = \"internal.example.net/bar\"\n");
        var reference = ImageReference.Parse("example.com/foo/myimage:latest");
        var entry = conf.Find(RegistriesConf.NameOf(reference))!;
        var rewritten = RegistriesConf.Rewrite(reference, entry, entry.Location, entry.DefinedAt);
        Assert.Equal(new ImageReference("internal.example.net", "bar/myimage", "latest", null), rewritten);
    }

    [Fact]
    public void DockerHubIsMatchedAsDockerIoAndRewrittenToTheWireHost()
    {
        var conf = Parse("[[registry]]\nprefix = \"docker.io/library\"\nlocation = \"hub-proxy.lab:5000/library\"\n");
        var reference = ImageReference.Parse("alpine:3");
        Assert.Equal("docker.io/library/alpine:3", RegistriesConf.NameOf(reference));
        var entry = conf.Find(RegistriesConf.NameOf(reference))!;
        Assert.Equal(new ImageReference("hub-proxy.lab:5000", "library/alpine", "3", null),
            RegistriesConf.Rewrite(reference, entry, entry.Location, entry.DefinedAt));
    }

    [Fact]
    public void Version1ListsBecomeInsecureAndBlockedEntries()
    {
        var conf = Parse("[registries.search]\nregistries = ['a.example.com']\n[registries.insecure]\nregistries = ['b.example.com:5000']\n[registries.block]\nregistries = ['c.example.com', 'b.example.com:5000']\n");
        Assert.Equal(new[] { "b.example.com:5000", "c.example.com" }, conf.Registries.Select(r => r.Prefix));
        Assert.True(conf.Registries[0].Insecure && conf.Registries[0].Blocked);
        Assert.True(conf.Registries[1].Blocked && !conf.Registries[1].Insecure);
    }

    [Fact]
    public void UnknownKeysAreIgnored()
    {
        var conf = Parse("short-name-mode = \"enforcing\"\ncredential-helpers = [\"containers-auth.json\"]\n[aliases]\n\"fedora\" = \"registry.fedoraproject.org/fedora\"\n");
        Assert.Empty(conf.Registries);
    }

    [Fact]
    public void MalformedTomlNamesFileAndLine()
    {
        var ex = Assert.Throws<OrasStagingException>(() => Parse("[[registry]]\nlocation = \"a.example.com\n", "/etc/containers/registries.conf.d/50-lab.conf"));
        Assert.Equal(ErrorCode.ConfigInvalid, ex.Code);
        Assert.Contains("/etc/containers/registries.conf.d/50-lab.conf", ex.Message);
        Assert.Contains("line 2", ex.Message);
    }

    [Theory]
    [InlineData("[[registry]]\ninsecure = true\n", "line 2", "neither prefix nor location")]
    [InlineData("[[registry]]\nprefix = \"a.example.com\"\n", "line 2", "no location")]
    [InlineData("[[registry]]\nprefix = \"*.example.com/foo\"\n", "line 2", "wildcard")]
    [InlineData("[[registry]]\nprefix = \"example.*.com\"\nlocation = \"x.example.com\"\n", "line 2", "'*'")]
    [InlineData("[[registry]]\nlocation = \"https://a.example.com\"\n", "line 2", "http")]
    [InlineData("[[registry]]\nlocation = \"nohost/path\"\n", "line 2", "registry host")]
    [InlineData("[[registry]]\nlocation = \"a.example.com\"\ninsecure = \"yes\"\n", "line 3", "true or false")]
    [InlineData("[[registry]]\nlocation = \"a.example.com\"\n\n[[registry.mirror]]\nlocation = \"m.example.com\"\npull-from-mirror = \"sometimes\"\n", "line 6", "sometimes")]
    [InlineData("[[registry]]\nlocation = \"a.example.com\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.example.com\"\npull-from-mirror = \"all\"\n", "line 6", "mirror-by-digest-only")]
    [InlineData("[[registry]]\nlocation = \"a.example.com\"\n[[registry.mirror]]\ninsecure = true\n", "line 4", "without a location")]
    [InlineData("[[registry]]\nlocation = \"a.example.com\"\n[[registry]]\nprefix = \"a.example.com\"\nlocation = \"b.example.com\"\n", "line 4", "second time")]
    [InlineData("registry = 3\n", "line 1", "array of tables")]
    public void InvalidEntriesNameFileAndLine(string toml, string line, string words)
    {
        var ex = Assert.Throws<OrasStagingException>(() => Parse(toml, "/home/u/.config/containers/registries.conf"));
        Assert.Equal(ErrorCode.ConfigInvalid, ex.Code);
        Assert.Contains("'/home/u/.config/containers/registries.conf' " + line, ex.Message);
        Assert.Contains(words, ex.Message);
    }
}
