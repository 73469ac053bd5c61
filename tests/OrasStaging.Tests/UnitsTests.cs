using OrasStaging;

namespace OrasStaging.Tests;

public class UnitsTests
{
    [Theory]
    [InlineData(0, "0 B")]
    [InlineData(1023, "1023 B")]
    [InlineData(1536, "1.50 KiB")]
    [InlineData(10L * 1024 * 1024, "10.0 MiB")]
    [InlineData(8L * 1024 * 1024 * 1024, "8.00 GiB")]
    public void BytesAreBinaryUnits(long bytes, string expected) => Assert.Equal(expected, Units.Bytes(bytes));

    [Fact]
    public void ShortDigestKeepsAlgorithmAndEightHexDigits()
    {
        string digest = "sha256:" + new string('a', 64);
        Assert.Equal("sha256:aaaaaaaa…", Units.ShortDigest(digest));
        Assert.Equal(string.Empty, Units.ShortDigest(null));
    }
}
