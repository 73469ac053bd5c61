using OrasStaging.DiskImages;
using OrasStaging.Tests.Staging;

namespace OrasStaging.Tests.DiskImages;

/// <summary>
/// qcow2 inputs through the converter and the stream writer, natively: every case gives a -QemuImgPath that does
/// not exist, so any call to qemu-img would fail with QemuImgNotFound. qemu-img is the oracle only.
/// </summary>
public class Qcow2InputTests
{
    private const long Grow = 8L << 30;
    private readonly CancellationToken _timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3)).Token;

    public static TheoryData<string, string[], bool> Inputs => new()
    {
        { "plain", [], false },
        { "zlib", ["-c"], true },
        { "zstd", ["-c", "-o", "compression_type=zstd"], false },
        { "c512-zlib", ["-c", "-o", "cluster_size=512"], true },
        { "c4k", ["-o", "cluster_size=4096"], true },
        { "c2m-zlib", ["-c", "-o", "cluster_size=2M"], false },
        { "v2-zlib", ["-c", "-o", "compat=0.10"], true },
        { "c64k", ["-o", "cluster_size=65536"], true },
        { "snapshot", ["-o", "cluster_size=4096"], true },  // an internal snapshot, then the active layer rewritten
        { "allzero", ["-c"], true },
    };

    private static DiskWriteOptions Options(TempDir dir, DiskImageFormat format, long grow = 0) =>
        new() { Format = format, GrowBy = grow, QemuImgPath = dir.File("no-qemu-img") };

    private static string Make(TempDir dir, string name, string[] options, bool compressed, out string raw)
    {
        raw = Qcow2Fixtures.Raw(dir, (9L << 20) + 1536, seed: name.Length);
        if (name == "allzero")
        {
            File.WriteAllBytes(raw, new byte[(9L << 20) + 1536]);
        }

        string qcow2 = Qcow2Fixtures.Convert(dir, raw, name + ".qcow2", options);
        if (name == "snapshot")
        {
            // The snapshot keeps the old clusters; the active layer gets new ones: the raw image is rewritten to match.
            Qcow2Fixtures.Qemu("snapshot", "-c", "before", qcow2);
            var (code, output) = ImageTools.Run("qemu-io", "-f", "qcow2", "-c", "write -P 0x77 100k 300k", qcow2);
            Assert.True(code == 0, output);
            using var f = new FileStream(raw, FileMode.Open, FileAccess.Write);
            f.Position = 100 << 10;
            f.Write(Enumerable.Repeat((byte)0x77, 300 << 10).ToArray());
        }

        return compressed ? TestInputs.Compressed(dir, "zstd", qcow2, ".zst", "-q") : qcow2;
    }

    [Theory]
    [MemberData(nameof(Inputs))]
    public async Task ToRawVhdAndGrownQcow2WithoutQemuImg(string name, string[] qemuOptions, bool compressed)
    {
        using var dir = new TempDir();
        string input = Make(dir, name, qemuOptions, compressed, out string raw);
        long size = new FileInfo(raw).Length;

        var r = await DiskImageConverter.ConvertFileAsync(input, dir.File("o.raw"), Options(dir, DiskImageFormat.Raw), NullOperationSink.Instance, _timeout);
        Assert.Equal(size, r.VirtualSize);
        Assert.Equal(File.ReadAllBytes(raw), File.ReadAllBytes(dir.File("o.raw")));

        var v = await DiskImageConverter.ConvertFileAsync(input, dir.File("o.vhd"), Options(dir, DiskImageFormat.Vhd), NullOperationSink.Instance, _timeout);
        Assert.Equal(TestInputs.RoundUp(size, 1 << 20), ImageTools.VirtualSize(dir.File("o.vhd"), "vpc"));
        Assert.Equal(v.VirtualSize, ImageTools.VirtualSize(dir.File("o.vhd"), "vpc"));

        var sink = new ListSink();
        var q = await DiskImageConverter.ConvertFileAsync(input, dir.File("o.qcow2"), Options(dir, DiskImageFormat.Qcow2, Grow), sink, _timeout);
        long grown = TestInputs.RoundUp(size, 512) + Grow;
        Assert.Equal(grown, q.VirtualSize);
        Assert.Equal(grown, ImageTools.VirtualSize(dir.File("o.qcow2"), "qcow2"));
        ImageTools.AssertCheckClean(dir.File("o.qcow2"));
        Assert.Contains(sink.Lines, l => l.Contains("Grew the qcow2 in place", StringComparison.Ordinal));

        // The grown image reads as the input followed by zeros.
        Qcow2Fixtures.Qemu("resize", "-f", "raw", raw, grown.ToString(System.Globalization.CultureInfo.InvariantCulture));
        ImageTools.AssertIdentical(raw, dir.File("o.qcow2"), "qcow2");
        ImageTools.AssertIdentical(raw, dir.File("o.vhd"), "vpc");
        Assert.Empty(Directory.GetFiles(dir.Path, ".*"));
    }

    [Fact]
    public async Task ALocalQcow2IsCopiedByTheFileSystemAndTheCopyIsWritableEvenFromAReadOnlyInput()
    {
        using var dir = new TempDir();
        string input = Make(dir, "zlib", ["-c"], compressed: false, out string raw);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(input, UnixFileMode.UserRead | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        }

        // Kept as is: the same bytes, a user-writable file.
        var sink = new ListSink();
        var same = await DiskImageConverter.ConvertFileAsync(input, dir.File("same.qcow2"), Options(dir, DiskImageFormat.Qcow2), sink, _timeout);
        Assert.Equal(File.ReadAllBytes(input), File.ReadAllBytes(dir.File("same.qcow2")));
        Assert.Equal(new FileInfo(input).Length, same.FileSize);
        Assert.Contains(sink.Lines, l => l.StartsWith("Copied the qcow2", StringComparison.Ordinal));
        if (!OperatingSystem.IsWindows())
        {
            Assert.True(File.GetUnixFileMode(dir.File("same.qcow2")).HasFlag(UnixFileMode.UserWrite));
        }

        // Grown: the copy is grown in place, checks clean, reads as the input then zeros.
        var q = await DiskImageConverter.ConvertFileAsync(input, dir.File("grown.qcow2"), Options(dir, DiskImageFormat.Qcow2, Grow), NullOperationSink.Instance, _timeout);
        long grown = TestInputs.RoundUp(new FileInfo(raw).Length, 512) + Grow;
        Assert.Equal(grown, q.VirtualSize);
        ImageTools.AssertCheckClean(dir.File("grown.qcow2"));
        Qcow2Fixtures.Qemu("resize", "-f", "raw", raw, grown.ToString(System.Globalization.CultureInfo.InvariantCulture));
        ImageTools.AssertIdentical(raw, dir.File("grown.qcow2"), "qcow2");
    }

    [Fact]
    public async Task AStreamedQcow2FromQemuImgConvertIsDecodedWithNoSpool()
    {
        using var dir = new TempDir();
        string input = Make(dir, "zlib", ["-c"], compressed: true, out string raw);
        var sink = new ListSink();
        string output = dir.File("out.raw");
        await using (var stream = new FileStream(input, FileMode.Open, FileAccess.Read))
        {
            await DiskImageWriter.WriteAsync(stream, output, Options(dir, DiskImageFormat.Raw), sink, _timeout);
        }

        Assert.Equal(File.ReadAllBytes(raw), File.ReadAllBytes(output));
        Assert.Contains(sink.Lines, l => l.StartsWith("Decoded the qcow2 stream directly", StringComparison.Ordinal));
        Assert.DoesNotContain(sink.Lines, l => l.Contains("spooling", StringComparison.Ordinal));
        Assert.Empty(Directory.GetFiles(dir.Path, ".*"));
    }

    [Fact]
    public async Task ExpandDecodesAQcow2WhenRawIsAsked()
    {
        using var dir = new TempDir();
        string input = Make(dir, "zstd", ["-c", "-o", "compression_type=zstd"], compressed: true, out string raw);
        string output = dir.File("disk.raw");
        var r = await DiskImageConverter.ExpandFileAsync(input, output, NullOperationSink.Instance, _timeout, format: DiskImageFormat.Raw);
        Assert.Equal(DiskImageFormat.Raw, r.Format);
        Assert.Equal(File.ReadAllBytes(raw), File.ReadAllBytes(output));
    }

    [Theory]
    [InlineData("c4k-zlib", false)]
    [InlineData("c4k-zlib", true)]
    public async Task ReencodeWritesANewQcow2ThroughTheReader(string name, bool compressed)
    {
        using var dir = new TempDir();
        string input = Make(dir, name, ["-c", "-o", "cluster_size=4096"], compressed, out string raw);
        long size = new FileInfo(raw).Length;
        var options = Options(dir, DiskImageFormat.Qcow2, Grow);
        options.Reencode = true;
        var sink = new ListSink();
        var q = await DiskImageConverter.ConvertFileAsync(input, dir.File("o.qcow2"), options, sink, _timeout);

        long grown = TestInputs.RoundUp(size, 512) + Grow;
        Assert.Equal(grown, q.VirtualSize);
        Assert.Equal(grown, ImageTools.VirtualSize(dir.File("o.qcow2"), "qcow2"));
        ImageTools.AssertCheckClean(dir.File("o.qcow2"));
        Assert.DoesNotContain(sink.Lines, l => l.Contains("Grew the qcow2 in place", StringComparison.Ordinal));
        // Written by our writer: 64 KiB clusters, where the input had 4 KiB ones.
        Assert.Contains("\"cluster-size\": 65536", Qcow2Fixtures.Qemu("info", "--output=json", "-f", "qcow2", dir.File("o.qcow2")));
        Qcow2Fixtures.Qemu("resize", "-f", "raw", raw, grown.ToString(System.Globalization.CultureInfo.InvariantCulture));
        ImageTools.AssertIdentical(raw, dir.File("o.qcow2"), "qcow2");
        Assert.Empty(Directory.GetFiles(dir.Path, ".*"));
    }

    /// <summary>A qcow2 overlay whose backing file is a host file: qemu-img would copy its bytes into the output.</summary>
    private static string Overlay(TempDir dir, string secret)
    {
        File.WriteAllBytes(secret, Enumerable.Repeat((byte)'S', 1 << 20).ToArray());
        string overlay = dir.File("overlay.qcow2");
        Qcow2Fixtures.Qemu("create", "-q", "-f", "qcow2", "-F", "raw", "-b", secret, overlay);
        return overlay;
    }

    [Theory]
    [InlineData(DiskImageFormat.Qcow2, 0L, false)]
    [InlineData(DiskImageFormat.Qcow2, 1L << 20, false)]
    [InlineData(DiskImageFormat.Raw, 0L, false)]
    [InlineData(DiskImageFormat.Qcow2, 0L, true)]
    [InlineData(DiskImageFormat.Raw, 0L, true)]
    public async Task ABackingFileIsRefusedBeforeAnythingIsWritten(DiskImageFormat format, long grow, bool compressed)
    {
        using var dir = new TempDir();
        string input = Overlay(dir, dir.File("shadow"));
        if (compressed)
        {
            input = TestInputs.Compressed(dir, "zstd", input, ".zst", "-q");
        }

        string output = dir.File("out.img");
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            DiskImageConverter.ConvertFileAsync(input, output, Options(dir, format, grow), NullOperationSink.Instance, _timeout));
        Assert.Equal(ErrorCode.UnsupportedFormat, ex.Code);
        Assert.Contains("backing file", ex.Message);
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.GetFiles(dir.Path, ".*"));
    }

    [Fact]
    public async Task AnExternalDataFileIsRefused()
    {
        using var dir = new TempDir();
        string image = dir.File("ext.qcow2");
        Qcow2Fixtures.Qemu("create", "-q", "-f", "qcow2", "-o", "data_file=" + dir.File("ext.data"), image, "4M");
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            DiskImageConverter.ConvertFileAsync(image, dir.File("out.qcow2"), Options(dir, DiskImageFormat.Qcow2, 1 << 20), NullOperationSink.Instance, _timeout));
        Assert.Equal(ErrorCode.UnsupportedFormat, ex.Code);
        Assert.False(File.Exists(dir.File("out.qcow2")));
    }

    [Fact]
    public async Task AVmdkDescriptorNamingAnExtentIsRefusedBeforeQemuImgConverts()
    {
        using var dir = new TempDir();
        string secret = dir.File("shadow");
        File.WriteAllBytes(secret, Enumerable.Repeat((byte)'S', 1 << 20).ToArray());
        string descriptor = dir.File("disk.vmdk");
        File.WriteAllText(descriptor,
            "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n" +
            $"RW 2048 FLAT \"{secret}\" 0\n\nddb.virtualHWVersion = \"4\"\nddb.geometry.cylinders = \"2\"\n" +
            "ddb.geometry.heads = \"16\"\nddb.geometry.sectors = \"63\"\nddb.adapterType = \"ide\"\n");
        string output = dir.File("out.qcow2");
        var options = new DiskWriteOptions { Format = DiskImageFormat.Qcow2, QemuImgPath = ImageTools.QemuImg };
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            DiskImageConverter.ConvertFileAsync(descriptor, output, options, NullOperationSink.Instance, _timeout));
        Assert.Equal(ErrorCode.UnsupportedFormat, ex.Code);
        Assert.Contains("extent " + secret, ex.Message);
        Assert.False(File.Exists(output));
        Assert.Empty(Directory.GetFiles(dir.Path, ".*"));
    }

    [Fact]
    public async Task AStreamThatInflatesPastTheDeclaredSizeFailsAtTheBound()
    {
        using var dir = new TempDir();
        // 256 MiB of zeros in a few KiB of zstd: far more than the 4 MiB the artifact declares.
        string zeros = dir.File("zeros.raw");
        using (var f = File.Create(zeros))
        {
            f.SetLength(256L << 20);
        }

        string input = TestInputs.Compressed(dir, "zstd", zeros, ".zst", "-q");
        File.Delete(zeros);
        var options = Options(dir, DiskImageFormat.Raw);
        options.MaxDecodedBytes = 4L << 20;
        await using var stream = File.OpenRead(input);
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            DiskImageWriter.WriteAsync(stream, dir.File("out.raw"), options, NullOperationSink.Instance, _timeout));
        Assert.Equal(ErrorCode.CorruptInput, ex.Code);
        Assert.Contains("declares", ex.Message);
    }

    [Fact]
    public async Task ARawStreamPastSizeFailsAsItPassesIt()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+512");
        var options = Options(dir, DiskImageFormat.Qcow2);
        options.Size = 1L << 20;
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            DiskImageConverter.ConvertFileAsync(TestInputs.Encode(dir, raw, "gzip"), dir.File("out.qcow2"), options, NullOperationSink.Instance, _timeout));
        Assert.Equal(ErrorCode.InvalidArgument, ex.Code);
        Assert.Contains("already decodes to more than", ex.Message);
    }

    [Theory]
    [InlineData(DiskImageFormat.Qcow2, long.MaxValue, null)]
    [InlineData(DiskImageFormat.Raw, long.MaxValue - 100, null)]
    [InlineData(DiskImageFormat.Qcow2, 0L, (1L << 51) + 1)]
    public async Task GrowthBeyondWhatTheFormatAddressesIsInvalidArgumentUpFront(DiskImageFormat format, long grow, long? size)
    {
        using var dir = new TempDir();
        string missing = dir.File("not-read.qcow2");
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => DiskImageConverter.ConvertFileAsync(missing, dir.File("o"),
            new DiskWriteOptions { Format = format, GrowBy = grow, Size = size }, NullOperationSink.Instance, _timeout));
        Assert.Equal(ErrorCode.InvalidArgument, ex.Code);
    }

    [Fact]
    public async Task GrowingSmallClustersPastTheirL1LimitIsInvalidArgumentBeforeTheCopy()
    {
        using var dir = new TempDir();
        string raw = Qcow2Fixtures.Raw(dir, 1 << 20);
        string input = Qcow2Fixtures.Convert(dir, raw, "c512.qcow2", "-o", "cluster_size=512");
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => DiskImageConverter.ConvertFileAsync(input, dir.File("o.qcow2"),
            Options(dir, DiskImageFormat.Qcow2, 1L << 40), NullOperationSink.Instance, _timeout));
        Assert.Equal(ErrorCode.InvalidArgument, ex.Code);
        Assert.False(File.Exists(dir.File("o.qcow2")));
    }

    [Fact]
    public async Task TheStagingWriterStopsAtTheDeclaredSize()
    {
        using var dir = new TempDir();
        string raw = TestInputs.MakeRaw(dir, "realistic-5MiB+512");
        var writer = OrasStaging.Staging.DiskImageStagingWriter.ForTarget(dir.File("out.img"), DiskImageFormat.Raw, 0, null);
        writer.DeclaredDecodedBytes = 2L << 20;
        await using var input = File.OpenRead(TestInputs.Encode(dir, raw, "gzip"));
        var ex = await Assert.ThrowsAsync<OrasStagingException>(() =>
            writer.WriteAsync(input, null, dir.File("out.img"), NullOperationSink.Instance, _timeout));
        Assert.Equal(ErrorCode.CorruptInput, ex.Code);

        writer.DeclaredDecodedBytes = (5L << 20) + 512;
        await using var again = File.OpenRead(TestInputs.Encode(dir, raw, "zstd-frames"));
        var ok = await writer.WriteAsync(again, null, dir.File("ok.img"), NullOperationSink.Instance, _timeout);
        Assert.Equal((5L << 20) + 512, ok.VirtualSize);
    }
}
