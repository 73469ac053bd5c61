using System.Security.Cryptography;
using OrasStaging.Oci;
using Xunit;

namespace OrasStaging.Tests.Oci;

/// <summary>The one home of the digest rules; expectations come from the runtime's hash functions, not from Digest.</summary>
public class DigestTests
{
    private static readonly byte[] Data = "a disk image"u8.ToArray();

    private static string Hex(byte[] hash) => Convert.ToHexString(hash).ToLowerInvariant();

    [Fact]
    public void Sha256AndSha512DigestsNameTheirAlgorithmAndHashWithIt()
    {
        string sha256 = "sha256:" + Hex(SHA256.HashData(Data));
        string sha512 = "sha512:" + Hex(SHA512.HashData(Data));

        Assert.Equal(HashAlgorithmName.SHA256, Digest.AlgorithmOf(sha256));
        Assert.Equal(HashAlgorithmName.SHA512, Digest.AlgorithmOf(sha512));
        Assert.Equal(sha256, Digest.Compute(sha256, Data));
        Assert.Equal(sha512, Digest.Compute(sha512, Data));
    }

    [Theory]
    [InlineData("sha256:ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789")] // upper-case hex
    [InlineData("sha256:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n")] // \z, not $
    [InlineData("sha256:abcdef")] // too short
    [InlineData("sha512:abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")] // sha512 needs 128 digits
    [InlineData("md5:d41d8cd98f00b204e9800998ecf8427e")]
    public void DigestsThisClientCannotVerifyAreRefusedAsUnsupported(string digest)
    {
        Assert.False(Digest.IsValid(digest));
        var ex = Assert.Throws<OrasStagingException>(() => Digest.AlgorithmOf(digest));
        Assert.Equal(ErrorCode.UnsupportedFormat, ex.Code);
    }

    [Fact]
    public void EqualityIgnoresSurroundingWhiteSpaceButNeverMatchesAnInvalidDigest()
    {
        string sha256 = "sha256:" + Hex(SHA256.HashData(Data));
        Assert.True(Digest.AreEqual(sha256 + "\n", sha256));
        Assert.False(Digest.AreEqual(sha256.ToUpperInvariant(), sha256.ToUpperInvariant()));
        Assert.False(Digest.AreEqual(null, null));
    }
}
