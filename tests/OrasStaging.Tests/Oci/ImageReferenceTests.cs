using OrasStaging.Oci;

namespace OrasStaging.Tests.Oci;

public class ImageReferenceTests
{
    private const string D256 = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    private static readonly string D512 = "sha512:" + new string('a', 128);

    [Theory]
    [InlineData("oras://ghcr.io/safl/nosi/debian:latest", "ghcr.io", "safl/nosi/debian", "latest", null)]
    [InlineData("ghcr.io/safl/nosi/debian:13", "ghcr.io", "safl/nosi/debian", "13", null)]
    [InlineData("oras://127.0.0.1:5000/lab/debian:latest", "127.0.0.1:5000", "lab/debian", "latest", null)]
    [InlineData("localhost:5000/a:b", "localhost:5000", "a", "b", null)]
    [InlineData("localhost/a:b", "localhost", "a", "b", null)]
    [InlineData("alpine:3.20", "registry-1.docker.io", "library/alpine", "3.20", null)]
    [InlineData("docker.io/alpine:latest", "registry-1.docker.io", "library/alpine", "latest", null)]
    [InlineData("docker.io/safl/img:x", "registry-1.docker.io", "safl/img", "x", null)]
    [InlineData("index.docker.io/safl/img:x", "registry-1.docker.io", "safl/img", "x", null)]
    [InlineData("oras://REG.example.com/a__b/c-d.e:Tag_1", "reg.example.com", "a__b/c-d.e", "Tag_1", null)]
    [InlineData("oras://[::1]:5000/a:b", "[::1]:5000", "a", "b", null)]
    public void Parses_valid_references(string text, string registry, string repo, string? tag, string? digest)
    {
        var r = ImageReference.Parse(text);
        Assert.Equal(new ImageReference(registry, repo, tag, digest), r);
    }

    [Fact]
    public void Parses_digests_sha256_and_sha512_with_and_without_tag()
    {
        var a = ImageReference.Parse($"oras://ghcr.io/safl/nosi/debian@{D256}");
        Assert.Equal(D256, a.Digest);
        Assert.Null(a.Tag);
        Assert.Equal($"ghcr.io/safl/nosi/debian@{D256}", a.ToString());
        var b = ImageReference.Parse($"127.0.0.1:5000/x/y:t@{D512}");
        Assert.Equal(("t", D512), (b.Tag, b.Digest));
        Assert.Equal($"127.0.0.1:5000/x/y:t@{D512}", b.ToString());
    }

    [Theory]
    [InlineData("", "empty")]
    [InlineData("oras://ghcr.io/safl/nosi/debian", ":latest")]
    [InlineData("https://ghcr.io/a:b", "scheme")]
    [InlineData("ghcr.io/Upper/case:x", "repository name")]
    [InlineData("ghcr.io/a//b:x", "repository name")]
    [InlineData("ghcr.io/a-:x", "repository name")]
    [InlineData("ghcr.io/a:.bad", "tag")]
    [InlineData("ghcr.io/a:-bad", "tag")]
    [InlineData("ghcr.io/a@sha256:abc", "digest")]
    [InlineData("ghcr.io/a@md5:0123456789abcdef0123456789abcdef", "digest")]
    [InlineData("ghcr.io/a@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", "digest")]
    [InlineData("user:pass@ghcr.io/a:b", "user information")]
    [InlineData("bad_host!.com/a:b", "registry")]
    public void Rejects_invalid_references_with_a_clear_message(string text, string mentions)
    {
        var ex = Assert.Throws<OrasStagingException>(() => ImageReference.Parse(text));
        Assert.Equal(ErrorCode.ReferenceInvalid, ex.Code);
        Assert.Contains(mentions, ex.Message, StringComparison.OrdinalIgnoreCase);
        Assert.False(ImageReference.TryParse(text, out _, out var error));
        Assert.NotNull(error);
    }

    [Fact]
    public void A_tag_of_128_characters_is_fine_and_129_is_not()
    {
        Assert.True(ImageReference.TryParse("ghcr.io/a:" + new string('t', 128), out _, out _));
        Assert.False(ImageReference.TryParse("ghcr.io/a:" + new string('t', 129), out _, out _));
    }

    [Fact]
    public void Missing_tag_suggests_latest_with_the_normalised_name()
    {
        var ex = Assert.Throws<OrasStagingException>(() => ImageReference.Parse("alpine"));
        Assert.Contains("oras://registry-1.docker.io/library/alpine:latest", ex.Message);
    }
}
