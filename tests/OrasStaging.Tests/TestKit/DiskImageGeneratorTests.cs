using System.Buffers.Binary;
using System.Text;
using OrasStaging.TestKit;

namespace OrasStaging.Tests.TestKit;

public class DiskImageGeneratorTests
{
    private static byte[] Generate(long size, int seed, ImageShape shape = ImageShape.Realistic, double fraction = 0.33)
    {
        using var buffer = new MemoryStream();
        DiskImageGenerator.Write(buffer, size, seed, shape, fraction);
        return buffer.ToArray();
    }

    [Theory]
    [InlineData(0)]
    [InlineData(511)]
    [InlineData(20_000)]
    [InlineData(5L * 1024 * 1024)]
    [InlineData(5L * 1024 * 1024 + 100)]
    public void StreamAndSparseFileHoldTheSameBytes(long size)
    {
        var path = Path.Combine(Path.GetTempPath(), $"gen-{Guid.NewGuid():n}.img");
        try
        {
            DiskImageGenerator.WriteFile(path, size, 42);
            var fromStream = Generate(size, 42);
            Assert.Equal(size, fromStream.Length);
            Assert.Equal(fromStream, File.ReadAllBytes(path));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void SameParametersGiveSameBytesAndOtherSeedsDoNot()
    {
        const long size = 3L * 1024 * 1024 + 7;
        Assert.Equal(Generate(size, 1), Generate(size, 1));
        Assert.NotEqual(Generate(size, 1), Generate(size, 2));
        Assert.NotEqual(Generate(size, 1, fraction: 0.33), Generate(size, 1, fraction: 0.5));
    }

    [Fact]
    public void RealisticImageHasValidPartitionTables()
    {
        const long size = 16L * 1024 * 1024 + 100;
        var image = Generate(size, 9);
        Assert.Equal(0x55, image[510]);
        Assert.Equal(0xAA, image[511]);
        Assert.Equal(0xEE, image[446 + 4]);
        Assert.Equal("EFI PART", Encoding.ASCII.GetString(image, 512, 8));

        var header = image.AsSpan(512, 92).ToArray();
        var headerCrc = BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(16));
        header.AsSpan(16, 4).Clear();
        Assert.Equal(headerCrc, Crc32(header));
        var entriesCrc = BinaryPrimitives.ReadUInt32LittleEndian(image.AsSpan(512 + 88));
        Assert.Equal(entriesCrc, Crc32(image.AsSpan(1024, 128 * 128)));

        // The backup header sits in the last 512 bytes, so the last sector is never zero.
        Assert.Equal("EFI PART", Encoding.ASCII.GetString(image, (int)size - 512, 8));
    }

    [Theory]
    [InlineData(0.1)]
    [InlineData(0.33)]
    [InlineData(0.7)]
    public void DataFractionIsTheShareOfClustersHoldingData(double fraction)
    {
        const int clusters = 1024;
        var image = Generate(clusters * 65536L, 5, fraction: fraction);
        int data = 0, longestZeroRun = 0, run = 0;
        for (int i = 0; i < clusters; i++)
        {
            if (image.AsSpan(i * 65536, 65536).IndexOfAnyExcept((byte)0) >= 0) { data++; run = 0; }
            else { run++; longestZeroRun = Math.Max(longestZeroRun, run); }
        }
        Assert.InRange(data / (double)clusters, fraction * 0.7, fraction * 1.3);
        Assert.True(longestZeroRun >= 2, $"longest zero run {longestZeroRun}");
    }

    [Fact]
    public void AllZeroAndRandomShapes()
    {
        var zeros = Generate(1_000_003, 1, ImageShape.AllZero);
        Assert.Equal(1_000_003, zeros.Length);
        Assert.True(zeros.AsSpan().IndexOfAnyExcept((byte)0) < 0);

        var random = Generate(1_000_003, 1, ImageShape.Random);
        Assert.Equal(1_000_003, random.Length);
        Assert.True(random.AsSpan().IndexOf(new byte[64]) < 0);
        Assert.NotEqual(random, Generate(1_000_003, 2, ImageShape.Random));
    }

    [Fact]
    public void RejectsBadArguments()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Generate(-1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => Generate(100, 1, fraction: 1.5));
    }

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (var b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? 0xEDB88320 ^ (crc >> 1) : crc >> 1;
        }
        return ~crc;
    }
}
