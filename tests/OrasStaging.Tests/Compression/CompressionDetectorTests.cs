using OrasStaging.Compression;
using OrasStaging.DiskImages;

namespace OrasStaging.Tests.Compression;

public class CompressionDetectorTests
{
    [Theory]
    [InlineData(new byte[] { 0x1F, 0x8B, 0x08, 0, 0, 0, 0, 0 }, CompressionKind.Gzip)]
    [InlineData(new byte[] { 0x28, 0xB5, 0x2F, 0xFD, 0x04, 0x58 }, CompressionKind.Zstd)]
    [InlineData(new byte[] { 0x50, 0x2A, 0x4D, 0x18, 0, 0, 0, 0 }, CompressionKind.Zstd)]
    [InlineData(new byte[] { 0x5F, 0x2A, 0x4D, 0x18, 0, 0, 0, 0 }, CompressionKind.Zstd)]
    [InlineData(new byte[] { 0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00, 0, 4 }, CompressionKind.Xz)]
    [InlineData(new byte[] { 0x42, 0x5A, 0x68, 0x39, 0x31, 0x41 }, CompressionKind.Bzip2)]
    [InlineData(new byte[] { 0x42, 0x5A, 0x68, 0x30 }, CompressionKind.None)]
    [InlineData(new byte[] { 0x1F, 0x8B }, CompressionKind.None)]
    [InlineData(new byte[] { 0x51, 0x46, 0x49, 0xFB, 0, 0, 0, 3 }, CompressionKind.None)]
    [InlineData(new byte[0], CompressionKind.None)]
    public void DetectsByMagicBytes(byte[] head, CompressionKind expected) => Assert.Equal(expected, CompressionDetector.Detect(head));

    [Fact]
    public void Lz4IsRecognisedAsUnsupported()
    {
        Assert.Equal("lz4", CompressionDetector.UnsupportedCompression(new byte[] { 0x04, 0x22, 0x4D, 0x18 }));
        Assert.Null(CompressionDetector.UnsupportedCompression(new byte[] { 0x1F, 0x8B, 0x08, 0 }));
    }

    [Fact]
    public void DetectsImageFormatsOfDecodedBytes()
    {
        var head = new byte[ImageFormatDetector.PeekLength];
        Assert.Equal(SourceFormat.Raw, ImageFormatDetector.Detect(head));
        Assert.Equal("raw", ImageFormatDetector.DescribeRaw(head));
        head[510] = 0x55;
        head[511] = 0xAA;
        Assert.Equal("raw (MBR)", ImageFormatDetector.DescribeRaw(head));
        "EFI PART"u8.CopyTo(head.AsSpan(512));
        Assert.Equal("raw (GPT)", ImageFormatDetector.DescribeRaw(head));
        Array.Clear(head);
        "CD001"u8.CopyTo(head.AsSpan(0x8001));
        Assert.Equal("raw (ISO 9660)", ImageFormatDetector.DescribeRaw(head));
        Assert.Equal(SourceFormat.Raw, ImageFormatDetector.Detect(head));

        Assert.Equal(SourceFormat.Qcow2, ImageFormatDetector.Detect(new byte[] { 0x51, 0x46, 0x49, 0xFB, 0, 0, 0, 3 }));
        Assert.Equal(SourceFormat.Vmdk, ImageFormatDetector.Detect("KDMV\u0001\0\0\0"u8));
        Assert.Equal(SourceFormat.Vmdk, ImageFormatDetector.Detect("# Disk DescriptorFile\n"u8));
        Assert.Equal(SourceFormat.Vhdx, ImageFormatDetector.Detect("vhdxfile"u8));
        Assert.Equal(SourceFormat.VhdDynamic, ImageFormatDetector.Detect("conectix"u8));
        var vdi = new byte[0x44];
        vdi[0x40] = 0x7F;
        vdi[0x41] = 0x10;
        vdi[0x42] = 0xDA;
        vdi[0x43] = 0xBE;
        Assert.Equal(SourceFormat.Vdi, ImageFormatDetector.Detect(vdi));
    }

    [Fact]
    public void VhdFooterChecksumRoundTrips()
    {
        byte[] footer = VhdFooter.Build(6L << 20, Guid.NewGuid(), DateTimeOffset.UtcNow);
        Assert.True(VhdFooter.IsFixedFooter(footer));
        footer[100] ^= 1;
        Assert.False(VhdFooter.IsFixedFooter(footer));
    }
}
