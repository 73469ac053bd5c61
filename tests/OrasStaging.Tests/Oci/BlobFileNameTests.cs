using OrasStaging.Oci;

namespace OrasStaging.Tests.Oci;

public class BlobFileNameTests
{
    private const string Hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    [Fact]
    public void Uses_the_title_when_it_is_a_safe_file_name() =>
        Assert.Equal("debian.img.gz", BlobFileName.For(new OrasImage { Digest = "sha256:" + Hex, Title = "debian.img.gz" }));

    [Fact]
    public void Falls_back_to_the_digest_hex_without_a_title() =>
        Assert.Equal(Hex + ".blob", BlobFileName.For(new OrasImage { Digest = "sha256:" + Hex }));

    [Theory]
    [InlineData("../../etc/passwd")]
    [InlineData("a/b")]
    [InlineData("a\\b")]
    [InlineData("C:evil")]
    [InlineData("x..y")]
    [InlineData("a|b")]
    [InlineData("nul.img")]
    public void Refuses_a_title_that_is_not_a_plain_file_name(string title)
    {
        var ex = Assert.Throws<OrasStagingException>(() => BlobFileName.For(new OrasImage { Digest = "sha256:" + Hex, Title = title }));
        Assert.Equal(ErrorCode.InvalidTitle, ex.Code);
    }
}
