using OrasStaging.Oci;
using OrasStaging.Oci.Mirrors;

namespace OrasStaging.Tests.Mirrors;

public class SourcePlannerTests
{
    private const string Digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    private static readonly RegistriesConf Lab = RegistriesConfFile.Parse("""
        [[registry]]
        prefix = "ghcr.io/acme"
        location = "ghcr.io/acme"

        [[registry.mirror]]
        location = "mirror-a.lab:5000/ghcr/acme"

        [[registry.mirror]]
        location = "mirror-b.lab"
        insecure = true
        pull-from-mirror = "digest-only"

        [[registry.mirror]]
        location = "mirror-c.lab/acme"
        pull-from-mirror = "tag-only"

        [[registry.mirror]]
        location = "mirror-d.lab/acme"
        pull-from-mirror = "all"
        """, "lab.conf");

    private static SourcePlan Plan(string reference, RegistriesConf? conf = null, string? cache = null, params string[] adHoc) =>
        SourcePlanner.Plan(ImageReference.Parse(reference), conf ?? Lab, adHoc.Select(AdHocMirror.Parse).ToArray(), cache);

    private static string[] Shape(SourcePlan plan) =>
        plan.Sources.Select(s => $"{s.Kind} {s.Host}/{s.Repository} {s.Roles}").ToArray();

    [Fact]
    public void TagIsResolvedAtTheOriginAndBlobsComeFromMirrorsFirst()
    {
        var plan = Plan("ghcr.io/acme/disk:1");
        Assert.Equal(new[]
        {
            "Mirror mirror-a.lab:5000/ghcr/acme/disk Manifest, Blob",
            "Mirror mirror-c.lab/acme/disk ResolveTag, Manifest, Blob",
            "Mirror mirror-d.lab/acme/disk ResolveTag, Manifest, Blob",
            "Origin ghcr.io/acme/disk ResolveTag, Manifest, Blob",
        }, Shape(plan));
        Assert.Equal(new[] { "mirror-a.lab:5000", "mirror-c.lab", "mirror-d.lab", "ghcr.io" }, plan.For(SourceRoles.Blob).Select(s => s.Host));
        Assert.All(plan.Sources, s => Assert.Equal("1", s.Reference.Tag));
        Assert.Contains(plan.Notes, n => n.Contains("mirror-b.lab") && n.Contains("digest-only"));
    }

    [Fact]
    public void PinnedDigestMayUseMirrorsForEverythingExceptTagOnlyOnes()
    {
        var plan = Plan("ghcr.io/acme/disk@" + Digest);
        Assert.Equal(new[]
        {
            "Mirror mirror-a.lab:5000/ghcr/acme/disk Manifest, Blob",
            "Mirror mirror-b.lab/disk Manifest, Blob",
            "Mirror mirror-d.lab/acme/disk Manifest, Blob",
            "Origin ghcr.io/acme/disk Manifest, Blob",
        }, Shape(plan));
        Assert.True(plan.Sources[1].Insecure);
        Assert.False(plan.Sources[0].Insecure);
        Assert.All(plan.Sources, s => Assert.Equal(Digest, s.Reference.Digest));
        Assert.Contains(plan.Notes, n => n.Contains("mirror-c.lab") && n.Contains("tag-only"));
    }

    [Fact]
    public void MirrorByDigestOnlyDropsEveryMirrorForATag()
    {
        var conf = RegistriesConfFile.Parse("[[registry]]\nlocation = \"ghcr.io\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.lab\"\n", "x.conf");
        Assert.Equal(new[] { "Origin ghcr.io/acme/disk ResolveTag, Manifest, Blob" }, Shape(Plan("ghcr.io/acme/disk:1", conf)));
        Assert.Equal("m.lab", Plan("ghcr.io/acme/disk@" + Digest, conf).Sources[0].Host);
    }

    [Fact]
    public void NoMatchingEntryMeansTheOriginAlone()
    {
        var plan = Plan("quay.io/other/disk:1");
        var only = Assert.Single(plan.Sources);
        Assert.Equal(SourceKind.Origin, only.Kind);
        Assert.Equal("reference", only.DefinedBy);
        Assert.Equal(ImageReference.Parse("quay.io/other/disk:1"), only.Reference);
    }

    [Fact]
    public void LocationRewritesTheOriginAndInsecureFollowsTheEntry()
    {
        var conf = RegistriesConfFile.Parse("[[registry]]\nprefix = \"example.com/foo\"\nlocation = \"internal.example.net:8443/bar\"\ninsecure = true\n", "x.conf");
        var plan = Plan("example.com/foo/img:latest", conf);
        var origin = Assert.Single(plan.Sources);
        Assert.Equal(new ImageReference("internal.example.net:8443", "bar/img", "latest", null), origin.Reference);
        Assert.Equal(plan.Origin, origin.Reference);
        Assert.Equal(ImageReference.Parse("example.com/foo/img:latest"), plan.Reference);
        Assert.True(origin.Insecure);
        Assert.Equal("'x.conf' line 2", origin.DefinedBy);
    }

    [Fact]
    public void WildcardEntryAppliesItsMirrorsWithoutRewritingTheOrigin()
    {
        var conf = RegistriesConfFile.Parse("[[registry]]\nprefix = \"*.corp.example\"\n[[registry.mirror]]\nlocation = \"cache.lab/corp\"\n", "x.conf");
        var plan = Plan("reg.eu.corp.example:5000/team/disk@" + Digest, conf);
        Assert.Equal(new[]
        {
            "Mirror cache.lab/corp/team/disk Manifest, Blob",
            "Origin reg.eu.corp.example:5000/team/disk Manifest, Blob",
        }, Shape(plan));
        Assert.Equal(ImageReference.Parse("reg.eu.corp.example:5000/team/disk@" + Digest), plan.Origin);
        Assert.Equal("reference", plan.Sources[^1].DefinedBy);
    }

    [Fact]
    public void BlockedIsRefusedWithTheFileThatSaysSo()
    {
        var conf = RegistriesConfFile.Parse("[[registry]]\nlocation = \"ghcr.io\"\n[[registry]]\nlocation = \"ghcr.io/evil\"\nblocked = true\n", "policy.conf");
        var ex = Assert.Throws<OrasStagingException>(() => Plan("ghcr.io/evil/disk:1", conf, null, "m.lab"));
        Assert.Equal(ErrorCode.AccessDenied, ex.Code);
        Assert.Contains("'policy.conf' line 4", ex.Message);
        Assert.Single(Plan("ghcr.io/fine/disk:1", conf).Sources);
    }

    [Fact]
    public void CacheServerComesFirstServesBlobsOnlyAndGetsNoCredentials()
    {
        var plan = Plan("ghcr.io/acme/disk:1", cache: "http://cache.lab:8080/");
        var cache = plan.Sources[0];
        Assert.Equal(SourceKind.Cache, cache.Kind);
        Assert.Equal(SourceRoles.Blob, cache.Roles);
        Assert.False(cache.UsesCredentials);
        Assert.Equal("cache.lab:8080", cache.Host);
        Assert.Equal(new Uri("http://cache.lab:8080/"), cache.CacheServer);

        // withcache keys by the origin's URL, so the cache entry carries the origin's reference.
        Assert.Equal(plan.Origin, cache.Reference);
        Assert.All(plan.Sources.Skip(1), s => Assert.True(s.UsesCredentials));
        Assert.Equal(SourceKind.Cache, plan.For(SourceRoles.Blob).First().Kind);
        Assert.DoesNotContain(plan.For(SourceRoles.Manifest), s => s.Kind == SourceKind.Cache);
    }

    [Theory]
    [InlineData("")]
    [InlineData("  ")]
    [InlineData(null)]
    public void NoCacheServerMeansNoCacheSource(string? cache) =>
        Assert.DoesNotContain(Plan("ghcr.io/acme/disk:1", cache: cache).Sources, s => s.Kind == SourceKind.Cache);

    [Fact]
    public void InvalidCacheServerIsNotedAndSkipped()
    {
        var plan = Plan("ghcr.io/acme/disk:1", cache: "ftp://cache.lab");
        Assert.DoesNotContain(plan.Sources, s => s.Kind == SourceKind.Cache);
        Assert.Contains(plan.Notes, n => n.Contains("cache server"));
    }

    [Fact]
    public void AdHocMirrorsComeBeforeConfiguredOnesAndKeepTheOriginRepository()
    {
        var plan = Plan("ghcr.io/acme/disk:1", null, null, "http://127.0.0.1:5001", "pull.lab/ghcr/");
        Assert.Equal(new[]
        {
            "Mirror 127.0.0.1:5001/acme/disk Manifest, Blob",
            "Mirror pull.lab/ghcr/acme/disk Manifest, Blob",
            "Mirror mirror-a.lab:5000/ghcr/acme/disk Manifest, Blob",
        }, Shape(plan).Take(3));
        Assert.True(plan.Sources[0].Insecure);
        Assert.False(plan.Sources[1].Insecure);
        Assert.Equal("-Mirror", plan.Sources[0].DefinedBy);
        Assert.Equal(SourceKind.Origin, plan.Sources[^1].Kind);
    }

    [Theory]
    [InlineData("")]
    [InlineData("nohost")]
    [InlineData("ftp://x.lab")]
    [InlineData("user@x.lab")]
    [InlineData("*.lab")]
    [InlineData("x.lab/UPPER")]
    public void InvalidAdHocMirrorIsAnArgumentError(string text) =>
        Assert.Equal(ErrorCode.InvalidArgument, Assert.Throws<OrasStagingException>(() => AdHocMirror.Parse(text)).Code);

    [Fact]
    public void AdHocMirrorForms()
    {
        Assert.Equal(new AdHocMirror("mirror.lab:5000/p", false), AdHocMirror.Parse(" https://mirror.lab:5000/p/ "));
        Assert.Equal(new AdHocMirror("localhost:5000", true), AdHocMirror.Parse("http://localhost:5000"));
    }
}
