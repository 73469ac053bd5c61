using OrasStaging.Compression;

namespace OrasStaging.Tests.Compression;

public class CompressedNameTests
{
    [Theory]
    [InlineData("debian.img.gz", "debian.img")]
    [InlineData("debian.qcow2.ZST", "debian.qcow2")]
    [InlineData("x.raw.zstd", "x.raw")]
    [InlineData("x.raw.xz", "x.raw")]
    [InlineData("x.raw.bz2", "x.raw")]
    [InlineData("a.gz.gz", "a.gz")]
    public void Takes_off_one_compression_extension(string name, string expected) =>
        Assert.Equal(expected, CompressedName.OutputName(name));

    [Theory]
    [InlineData("disk.img")]
    [InlineData(".gz")]
    [InlineData("disk.lz4")]
    public void Refuses_a_name_with_no_output_name_left(string name)
    {
        Assert.Null(CompressedName.Strip(name));
        var ex = Assert.Throws<OrasStagingException>(() => CompressedName.OutputName(name));
        Assert.Equal(ErrorCode.InvalidArgument, ex.Code);
        Assert.Equal("Give -DestinationPath.", ex.RecommendedAction);
    }
}
