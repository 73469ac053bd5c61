using OrasStaging.DiskImages;

namespace OrasStaging.Tests.DiskImages;

public class DiskImageConverterTests
{
    // Each case its own budget: xunit makes a new instance per case, so one slow case on a loaded machine cannot
    // spend the time of the cases after it (a static token would be shared by the whole class).
    private readonly CancellationToken Timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2)).Token;

    private Task<DiskWriteResult> Convert(string input, string output, DiskWriteOptions options) =>
        DiskImageConverter.ConvertFileAsync(input, output, options, NullOperationSink.Instance, Timeout);

    [Theory]
    [InlineData(DiskImageFormat.Vmdk, "vmdk", 0L)]
    [InlineData(DiskImageFormat.Vmdk, "vmdk", 1L << 20)]
    [InlineData(DiskImageFormat.Vdi, "vdi", 0L)]
    [InlineData(DiskImageFormat.Vhdx, "vhdx", 8L << 30)]
    public async Task NonNativeTargetsGoThroughQemuImg(DiskImageFormat format, string qemuFormat, long grow)
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        string input = TestInputs.Encode(dir, raw, "gzip");
        string output = dir.File("out." + qemuFormat);

        var result = await Convert(input, output, new DiskWriteOptions { Format = format, GrowBy = grow, QemuImgPath = ImageTools.QemuImg });

        long expected = TestInputs.RoundUp((5L << 20) + 100, 512) + grow;
        Assert.Equal(expected, ImageTools.VirtualSize(output, qemuFormat));
        Assert.Equal(expected, result.VirtualSize);
        ImageTools.AssertIdentical(raw, output, qemuFormat);
        Assert.Equal(new[] { output }, Directory.GetFiles(dir.Path, "out*"));
        Assert.Empty(Directory.GetFiles(dir.Path, ".*"));
    }

    [Theory]
    [InlineData("vmdk", DiskImageFormat.Qcow2, "qcow2")]
    [InlineData("vdi", DiskImageFormat.Vhd, "vpc")]
    [InlineData("vhdx", DiskImageFormat.Raw, "raw")]
    [InlineData("qcow2", DiskImageFormat.Qcow2, "qcow2")]
    public async Task NonNativeInputsAreReadByQemuImgAndGrownNatively(string inputFormat, DiskImageFormat target, string qemuFormat)
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+512");
        string image = dir.File("in." + inputFormat);
        var (code, text) = ImageTools.Run(ImageTools.QemuImg, "convert", "-f", "raw", "-O", inputFormat, raw, image);
        Assert.True(code == 0, text);
        string input = TestInputs.Compressed(dir, "zstd", image, ".zst", "-q");
        string output = dir.File("out.img");

        var result = await Convert(input, output, new DiskWriteOptions { Format = target, GrowBy = 2L << 20 });

        ImageTools.AssertIdentical(raw, output, qemuFormat);
        long expected = (5L << 20) + 512 + (2L << 20);
        if (target == DiskImageFormat.Vhd)
        {
            expected = TestInputs.RoundUp(expected, 1 << 20);
        }

        Assert.Equal(expected, ImageTools.VirtualSize(output, qemuFormat));
        Assert.Equal(expected, result.VirtualSize);
        if (target == DiskImageFormat.Qcow2)
        {
            ImageTools.AssertCheckClean(output);
        }

        Assert.Empty(Directory.GetFiles(dir.Path, ".*"));
    }

    [Fact]
    public async Task AMissingQemuImgPathIsQemuImgNotFound()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Convert(raw, dir.File("out.vmdk"),
            new DiskWriteOptions { Format = DiskImageFormat.Vmdk, QemuImgPath = dir.File("no-such-qemu-img") }));
        Assert.Equal(ErrorCode.QemuImgNotFound, ex.Code);
        Assert.Contains("qemu-utils", ex.RecommendedAction);
    }

    [Fact]
    public async Task ExpandRefusesAnUncompressedInput()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            DiskImageConverter.ExpandFileAsync(raw, dir.File("out.img"), NullOperationSink.Instance, Timeout));
        Assert.Equal(ErrorCode.UnsupportedFormat, ex.Code);
    }

    [Fact]
    public async Task ExpandKeepsTheImageFormat()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        string qcow2 = dir.File("in.qcow2");
        var (code, text) = ImageTools.Run(ImageTools.QemuImg, "convert", "-f", "raw", "-O", "qcow2", raw, qcow2);
        Assert.True(code == 0, text);
        string output = dir.File("out.qcow2");
        await DiskImageConverter.ExpandFileAsync(TestInputs.Compressed(dir, "bzip2", qcow2, ".bz2"), output, NullOperationSink.Instance, Timeout);
        Assert.Equal(File.ReadAllBytes(qcow2), File.ReadAllBytes(output));
    }

    [Fact]
    public async Task DestinationFileLeavesNothingBehindOnFailure()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        byte[] gz = File.ReadAllBytes(TestInputs.Compressed(dir, "gzip", raw, ".gz"));
        string truncated = dir.File("cut.gz");
        File.WriteAllBytes(truncated, gz[..(gz.Length / 2)]);
        string output = dir.File("out.qcow2");
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => DestinationFile.WriteAsync(output, force: false,
            temp => Convert(truncated, temp, new DiskWriteOptions())));
        Assert.Equal(ErrorCode.CorruptInput, ex.Code);
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.GetFiles(dir.Path, ".*"));

        File.WriteAllText(output, "x");
        var exists = await Assert.ThrowsAsync<OrasStagingException>(() => DestinationFile.WriteAsync(output, force: false,
            temp => Convert(raw, temp, new DiskWriteOptions())));
        Assert.Equal(ErrorCode.DestinationExists, exists.Code);

        string folder = dir.File("folder.qcow2");
        Directory.CreateDirectory(folder);
        var isFolder = await Assert.ThrowsAsync<OrasStagingException>(() => DestinationFile.WriteAsync(folder, force: true,
            temp => Convert(raw, temp, new DiskWriteOptions())));
        Assert.Equal(ErrorCode.InvalidArgument, isFolder.Code);
        await DestinationFile.WriteAsync(output, force: true, temp => Convert(raw, temp, new DiskWriteOptions()));
        ImageTools.AssertCheckClean(output);
    }
}

/// <summary>Changes PATH, so it runs alone.</summary>
[CollectionDefinition("PATH", DisableParallelization = true)]
public class PathCollection
{
}

[Collection("PATH")]
public class NativePathsWithoutQemuImgTests
{
    [Fact]
    public async Task NativeConversionsNeverSpawnQemuImg()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+100");
        string gz = TestInputs.Compressed(dir, "gzip", raw, ".gz");
        string qcow2In = dir.File("in.qcow2");
        var (code, text) = ImageTools.Run(ImageTools.QemuImg, "convert", "-f", "raw", "-O", "qcow2", raw, qcow2In);
        Assert.True(code == 0, text);
        string qcow2Gz = TestInputs.Compressed(dir, "gzip", qcow2In, ".gz");

        // A qemu-img that only leaves a mark, first on PATH: any call to it is caught.
        string bin = Directory.CreateDirectory(dir.File("bin")).FullName;
        string marker = dir.File("spawned");
        string fake = Path.Combine(bin, OperatingSystem.IsWindows() ? "qemu-img.exe" : "qemu-img");
        File.WriteAllText(fake, $"#!/bin/sh\necho \"$@\" >> '{marker}'\nexit 1\n");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(fake, (UnixFileMode)0b111_101_101);
        }

        string? path = Environment.GetEnvironmentVariable("PATH");
        Environment.SetEnvironmentVariable("PATH", bin);
        try
        {
            var cases = new (string Input, DiskImageFormat Format, string Name)[]
            {
                (gz, DiskImageFormat.Qcow2, "a.qcow2"),
                (raw, DiskImageFormat.Vhd, "b.vhd"),
                (gz, DiskImageFormat.Raw, "c.img"),
                (qcow2Gz, DiskImageFormat.Qcow2, "d.qcow2"),
            };
            foreach (var c in cases)
            {
                await DiskImageConverter.ConvertFileAsync(c.Input, dir.File(c.Name),
                    new DiskWriteOptions { Format = c.Format, GrowBy = c.Name == "d.qcow2" ? 0 : 1 << 20 },
                    NullOperationSink.Instance, CancellationToken.None);
            }

            await DiskImageConverter.ExpandFileAsync(gz, dir.File("e.img"), NullOperationSink.Instance, CancellationToken.None);
            Assert.False(File.Exists(marker), "qemu-img was spawned: " + (File.Exists(marker) ? File.ReadAllText(marker) : string.Empty));

            // And with no qemu-img at all, a non-native target names what to install.
            File.Delete(fake);
            var ex = await Assert.ThrowsAsync<OrasStagingException>(() => DiskImageConverter.ConvertFileAsync(raw, dir.File("f.vdi"),
                new DiskWriteOptions { Format = DiskImageFormat.Vdi }, NullOperationSink.Instance, CancellationToken.None));
            Assert.Equal(ErrorCode.QemuImgNotFound, ex.Code);
        }
        finally
        {
            Environment.SetEnvironmentVariable("PATH", path);
        }

        ImageTools.AssertCheckClean(dir.File("a.qcow2"));
        ImageTools.AssertIdentical(raw, dir.File("a.qcow2"), "qcow2");
        ImageTools.AssertIdentical(raw, dir.File("b.vhd"), "vpc");
        ImageTools.AssertIdentical(raw, dir.File("c.img"), "raw");
        Assert.Equal(File.ReadAllBytes(qcow2In), File.ReadAllBytes(dir.File("d.qcow2")));
        Assert.Equal(File.ReadAllBytes(raw), File.ReadAllBytes(dir.File("e.img")));
    }
}
