using OrasStaging.Compression;
using OrasStaging.DiskImages;
using OrasStaging.IO;
using OrasStaging.TestKit;

namespace OrasStaging.Tests.DiskImages;

public class DiskImageWriterTests
{
    // Each case its own budget: xunit makes a new instance per case, so one slow case on a loaded machine cannot
    // spend the time of the cases after it (a static token would be shared by the whole class).
    private readonly CancellationToken Timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2)).Token;

    public static TheoryData<string, string> Matrix()
    {
        var data = new TheoryData<string, string>();
        foreach (string e in TestInputs.Encodings)
        {
            foreach (string s in TestInputs.Shapes)
            {
                data.Add(e, s);
            }
        }

        return data;
    }

    private async Task<DiskWriteResult> Write(string input, string output, DiskWriteOptions options)
    {
        await using var stream = File.OpenRead(input);
        return await DiskImageWriter.WriteAsync(stream, output, options, NullOperationSink.Instance, Timeout);
    }

    [Theory]
    [MemberData(nameof(Matrix))]
    public async Task Qcow2ComparesIdenticalAndChecksClean(string encoding, string shape)
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, shape);
        string input = TestInputs.Encode(dir, raw, encoding);
        string output = dir.File("out.qcow2");
        long rawLength = new FileInfo(raw).Length;

        var result = await Write(input, output, new DiskWriteOptions { Format = DiskImageFormat.Qcow2 });

        ImageTools.AssertCheckClean(output);
        ImageTools.AssertIdentical(raw, output, "qcow2");
        Assert.Equal(TestInputs.RoundUp(rawLength, 512), ImageTools.VirtualSize(output, "qcow2"));
        Assert.Equal(rawLength, result.DecodedBytes);
        Assert.Equal(new FileInfo(input).Length, result.InputBytes);
        Assert.Equal(new FileInfo(output).Length, result.FileSize);
        var expected = encoding switch
        {
            "none" => CompressionKind.None,
            "gzip" or "gzip-2members" => CompressionKind.Gzip,
            "zstd-frames" => CompressionKind.Zstd,
            "xz" => CompressionKind.Xz,
            _ => CompressionKind.Bzip2,
        };
        Assert.Equal(expected, result.Compression);
    }

    [Theory]
    [InlineData("realistic-5MiB+100")]
    [InlineData("allzero-3MiB")]
    [InlineData("empty")]
    public async Task Qcow2LeavesZeroClustersUnallocated(string shape)
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, shape);
        string output = dir.File("out.qcow2");
        await Write(raw, output, new DiskWriteOptions());

        long dataClusters = 0;
        byte[] all = File.ReadAllBytes(raw);
        for (int off = 0; off < all.Length; off += 65536)
        {
            if (all.AsSpan(off, Math.Min(65536, all.Length - off)).IndexOfAnyExcept((byte)0) >= 0)
            {
                dataClusters++;
            }
        }

        // Header + data + at most one L2, one L1, one reftable and one refcount block at this size.
        long clusters = new FileInfo(output).Length / 65536;
        Assert.InRange(clusters, 1 + dataClusters + 2, 1 + dataClusters + 4);
    }

    [Theory]
    [InlineData(DiskImageFormat.Qcow2, "qcow2")]
    [InlineData(DiskImageFormat.Raw, "raw")]
    [InlineData(DiskImageFormat.Vhd, "vpc")]
    public async Task GrowByAddsToTheInputRoundedUpTo512(DiskImageFormat format, string qemuFormat)
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        string input = TestInputs.Encode(dir, raw, "gzip");
        string output = dir.File("out");
        long grow = 8L << 30;

        var result = await Write(input, output, new DiskWriteOptions { Format = format, GrowBy = grow });

        long expected = TestInputs.RoundUp((5L << 20) + 100, 512) + grow;
        if (format == DiskImageFormat.Vhd)
        {
            expected = TestInputs.RoundUp(expected, 1 << 20);
        }

        Assert.Equal(expected, result.VirtualSize);
        Assert.Equal(expected, ImageTools.VirtualSize(output, qemuFormat));
        ImageTools.AssertIdentical(raw, output, qemuFormat);
        if (format == DiskImageFormat.Qcow2)
        {
            ImageTools.AssertCheckClean(output);
            Assert.True(new FileInfo(output).Length < 8L << 20, "growth must not allocate clusters");
        }
    }

    [Fact]
    public async Task SizeOf2TBOnASmallInputStaysSmallAndValid()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+512");
        string output = dir.File("out.qcow2");

        var result = await Write(raw, output, new DiskWriteOptions { Size = 2_000_000_000_000 });

        Assert.Equal(2_000_000_000_000, ImageTools.VirtualSize(output, "qcow2"));
        Assert.Equal(2_000_000_000_000, result.VirtualSize);
        Assert.True(new FileInfo(output).Length < 8L << 20);
        ImageTools.AssertCheckClean(output);
        ImageTools.AssertIdentical(raw, output, "qcow2");
    }

    [Fact]
    public async Task EmptyInputWithSizeIsValid()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "empty");
        string output = dir.File("out.qcow2");
        await Write(raw, output, new DiskWriteOptions { Size = 1L << 30 });
        Assert.Equal(1L << 30, ImageTools.VirtualSize(output, "qcow2"));
        ImageTools.AssertCheckClean(output);
    }

    [Fact]
    public async Task SizeBelowTheInputIsInvalidArgument()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            Write(raw, dir.File("out.qcow2"), new DiskWriteOptions { Size = 5L << 20 }));
        Assert.Equal(ErrorCode.InvalidArgument, ex.Code);
    }

    [Fact]
    public async Task FixedVhdHasAzureSizeAndOpensAsVpc()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        string output = dir.File("out.vhd");

        var result = await Write(raw, output, new DiskWriteOptions { Format = DiskImageFormat.Vhd });

        long v = 6L << 20;
        Assert.Equal(v, result.VirtualSize);
        Assert.Equal(v + 512, new FileInfo(output).Length);
        Assert.Equal(v, ImageTools.VirtualSize(output, "vpc"));
        ImageTools.AssertIdentical(raw, output, "vpc");
        var footer = new byte[512];
        using (var f = File.OpenRead(output))
        {
            f.Seek(-512, SeekOrigin.End);
            f.ReadExactly(footer);
        }

        Assert.True(VhdFooter.IsFixedFooter(footer));
        Assert.Equal("qem2"u8.ToArray(), footer[28..32]);
    }

    [Fact]
    public async Task RawIsSparseAndExact()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "allzero-3MiB");
        string output = dir.File("out.img");
        var result = await Write(TestInputs.Encode(dir, raw, "zstd-frames"), output, new DiskWriteOptions { Format = DiskImageFormat.Raw });
        Assert.Equal(3L << 20, new FileInfo(output).Length);
        Assert.Equal(3L << 20, result.FileSize);
        Assert.Equal(File.ReadAllBytes(raw), File.ReadAllBytes(output));
        if (OperatingSystem.IsLinux())
        {
            var (_, blocks) = ImageTools.Run("stat", "-c", "%b", output);
            Assert.Equal(0, long.Parse(blocks.Trim()));
        }
    }

    /// <summary>
    /// Zeros are found per file-system block (4 KiB), not per 64 KiB cluster: in a 1 MiB image whose every 64 KiB
    /// holds 4 KiB of data and 60 KiB of zeros, only the data blocks are allocated (as qemu-img convert leaves it).
    /// </summary>
    [Fact]
    public async Task RawLeavesZeroBlocksInsideDataClustersAsHoles()
    {
        if (!OperatingSystem.IsLinux())
        {
            return;
        }

        using var dir = new TempDir();
        var image = new byte[1 << 20];
        for (int cluster = 0; cluster < image.Length; cluster += 64 << 10)
        {
            Random.Shared.NextBytes(image.AsSpan(cluster, 4096));
        }

        string raw = dir.File("in.img");
        File.WriteAllBytes(raw, image);
        string output = dir.File("out.img");
        await Write(TestInputs.Encode(dir, raw, "gzip"), output, new DiskWriteOptions { Format = DiskImageFormat.Raw });
        Assert.Equal(image, File.ReadAllBytes(output));
        var (_, blocks) = ImageTools.Run("stat", "-c", "%b %B", output);
        var f = blocks.Trim().Split(' ');
        long allocated = long.Parse(f[0]) * long.Parse(f[1]);
        Assert.True(allocated <= 16 * 4096 + (64 << 10), $"{allocated} bytes allocated for 64 KiB of data in 4 KiB blocks.");
    }

    [Theory]
    [InlineData("ours")]
    [InlineData("qemu")]
    public async Task AFixedVhdInputStreamsAsRaw(string maker)
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+512");
        string vhd = dir.File("in.vhd");
        if (maker == "ours")
        {
            await Write(raw, vhd, new DiskWriteOptions { Format = DiskImageFormat.Vhd });
        }
        else
        {
            var (code, output) = ImageTools.Run(ImageTools.QemuImg, "convert", "-f", "raw", "-O", "vpc", "-o", "subformat=fixed,force_size", raw, vhd);
            Assert.True(code == 0, output);
        }

        string qcow2 = dir.File("out.qcow2");
        var result = await Write(TestInputs.Compressed(dir, "gzip", vhd, ".gz"), qcow2, new DiskWriteOptions());

        Assert.Equal(new FileInfo(vhd).Length - 512, result.DecodedBytes);
        ImageTools.AssertCheckClean(qcow2);
        ImageTools.AssertIdentical(raw, qcow2, "qcow2");
        Assert.Equal(ImageTools.VirtualSize(vhd, "vpc"), ImageTools.VirtualSize(qcow2, "qcow2"));
    }

    [Fact]
    public async Task AQcow2InputWithAQcow2TargetIsCopied()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        string qcow2 = dir.File("in.qcow2");
        var (code, text) = ImageTools.Run(ImageTools.QemuImg, "convert", "-f", "raw", "-O", "qcow2", raw, qcow2);
        Assert.True(code == 0, text);
        string output = dir.File("out.qcow2");

        var result = await Write(TestInputs.Compressed(dir, "xz", qcow2, ".xz"), output, new DiskWriteOptions());

        Assert.Equal(File.ReadAllBytes(qcow2), File.ReadAllBytes(output));
        Assert.Equal(ImageTools.VirtualSize(qcow2, "qcow2"), result.VirtualSize);

        // Growth from a stream: copied as is into the target, then grown in place (no qemu-img).
        var grown = await Write(qcow2, dir.File("grown.qcow2"), new DiskWriteOptions { GrowBy = 1 << 20 });
        Assert.Equal(ImageTools.VirtualSize(qcow2, "qcow2") + (1 << 20), grown.VirtualSize);
        Assert.Equal(grown.VirtualSize, ImageTools.VirtualSize(dir.File("grown.qcow2"), "qcow2"));
        ImageTools.AssertCheckClean(dir.File("grown.qcow2"));
    }

    [Theory]
    [InlineData("vmdk")]
    [InlineData("vdi")]
    [InlineData("vhdx")]
    public async Task NonNativeInputsAreUnsupportedFormatFromAStream(string format)
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        string image = dir.File("in." + format);
        var (code, text) = ImageTools.Run(ImageTools.QemuImg, "convert", "-f", "raw", "-O", format, raw, image);
        Assert.True(code == 0, text);
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Write(image, dir.File("out.qcow2"), new DiskWriteOptions()));
        Assert.Equal(ErrorCode.UnsupportedFormat, ex.Code);
    }

    [Theory]
    [InlineData("gzip", ".gz")]
    [InlineData("zstd", ".zst")]
    [InlineData("xz", ".xz")]
    [InlineData("bzip2", ".bz2")]
    public async Task TruncatedStreamsAreCorruptInput(string tool, string ext)
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        string compressed = TestInputs.Compressed(dir, tool, raw, ext, tool == "zstd" ? new[] { "-q" } : Array.Empty<string>());
        byte[] all = File.ReadAllBytes(compressed);
        foreach (int cut in new[] { all.Length / 2, all.Length - 4, 20 })
        {
            string truncated = dir.File($"cut{cut}{ext}");
            File.WriteAllBytes(truncated, all[..cut]);
            var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
                Write(truncated, dir.File($"out{cut}.qcow2"), new DiskWriteOptions()));
            Assert.Equal(ErrorCode.CorruptInput, ex.Code);
        }
    }

    [Fact]
    public async Task InputFailuresPropagateUnchanged()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        string gz = TestInputs.Compressed(dir, "gzip", raw, ".gz");
        var failure = new OrasStagingException(ErrorCode.DigestMismatch, "digest mismatch");
        await using var input = new FailingStream(File.OpenRead(gz), new FileInfo(gz).Length / 2, failure);
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            DiskImageWriter.WriteAsync(input, dir.File("out.qcow2"), new DiskWriteOptions(), NullOperationSink.Instance, Timeout));
        Assert.Same(failure, ex);
    }

    [Fact]
    public async Task CancellationStopsTheWrite()
    {
        using var dir = new TempDir();
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await using var input = new MemoryStream(new byte[4 << 20]);
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            DiskImageWriter.WriteAsync(input, dir.File("out.qcow2"), new DiskWriteOptions(), NullOperationSink.Instance, cts.Token));
    }

    [Fact]
    public async Task Lz4IsUnsupportedFormat()
    {
        using var dir = new TempDir();
        await using var input = new MemoryStream(new byte[] { 0x04, 0x22, 0x4D, 0x18, 0x64, 0x40, 0xA7, 0, 0, 0, 0 });
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            DiskImageWriter.WriteAsync(input, dir.File("out.qcow2"), new DiskWriteOptions(), NullOperationSink.Instance, Timeout));
        Assert.Equal(ErrorCode.UnsupportedFormat, ex.Code);
    }

    [Fact]
    public async Task NonNativeTargetsAreRefusedFromAStream()
    {
        using var dir = new TempDir();
        await using var input = new MemoryStream(new byte[4096]);
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            DiskImageWriter.WriteAsync(input, dir.File("out.vmdk"), new DiskWriteOptions { Format = DiskImageFormat.Vmdk }, NullOperationSink.Instance, Timeout));
        Assert.Equal(ErrorCode.UnsupportedFormat, ex.Code);
    }

    [Fact]
    public async Task TheOutputMustBeNew()
    {
        using var dir = new TempDir();
        string output = dir.File("out.qcow2");
        File.WriteAllText(output, "keep me");
        await using var input = new MemoryStream(new byte[4096]);
        await Assert.ThrowsAsync<IOException>(() =>
            DiskImageWriter.WriteAsync(input, output, new DiskWriteOptions(), NullOperationSink.Instance, Timeout));
        Assert.Equal("keep me", File.ReadAllText(output));
    }

    [Fact]
    public async Task AKnownCompressedLengthBeyondTheFreeSpaceIsInsufficientSpace()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        string gz = TestInputs.Compressed(dir, "gzip", raw, ".gz");
        string output = dir.File("out.qcow2");
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            Write(gz, output, new DiskWriteOptions { InputLength = long.MaxValue / 2 }));
        Assert.Equal(ErrorCode.InsufficientSpace, ex.Code);
        Assert.False(File.Exists(output), "the check comes before the output is created");
    }

    [Fact]
    public void DiskFullIOExceptionsMapToInsufficientSpace()
    {
        Assert.True(DiskSpace.IsDiskFull(new IOException("No space left on device", 28)));
        Assert.True(DiskSpace.IsDiskFull(new IOException("disk full", unchecked((int)0x80070070))));
        Assert.False(DiskSpace.IsDiskFull(new IOException("other", 5)));
        Assert.Equal(ErrorCode.InsufficientSpace, DiskSpace.Full("x", new IOException("full", 28)).Code);
    }
}
