using System.Buffers.Binary;
using OrasStaging.DiskImages;
using OrasStaging.Tests.Staging;

namespace OrasStaging.Tests.DiskImages;

/// <summary>
/// A qcow2 read from a stream (what Install and Expand of a .qcow2.zst see) decoded to raw, VHD or a re-encoded
/// qcow2: directly when the tables precede the data (qemu-img convert), through one spool beside the target
/// otherwise. Which path was taken is read from the Verbose line; qemu-img is the oracle only.
/// </summary>
public class Qcow2StreamTests
{
    private const string Direct = "Decoded the qcow2 stream directly";
    private const string Spooling = "spooling that part once";
    private readonly CancellationToken _timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3)).Token;

    public static TheoryData<string, string[]> Layouts => new()
    {
        { "plain", [] },
        { "zlib", ["-c"] },
        { "zstd", ["-c", "-o", "compression_type=zstd"] },
        { "c512-zlib", ["-c", "-o", "cluster_size=512"] },
        { "c4k", ["-o", "cluster_size=4096"] },
        { "c4k-zstd", ["-c", "-o", "cluster_size=4096,compression_type=zstd"] },
        { "c2m-zlib", ["-c", "-o", "cluster_size=2M"] },
        { "v2-zlib", ["-c", "-o", "compat=0.10"] },
        { "extended-l2", ["-o", "extended_l2=on,cluster_size=128k"] },
    };

    private static DiskWriteOptions Options(TempDir dir, DiskImageFormat format, long grow = 0) =>
        new() { Format = format, GrowBy = grow, QemuImgPath = dir.File("no-qemu-img") };

    private async Task<ListSink> Stream(string input, string output, DiskWriteOptions options)
    {
        var sink = new ListSink();
        await using var stream = new FileStream(input, FileMode.Open, FileAccess.Read);
        await DiskImageWriter.WriteAsync(stream, output, options, sink, _timeout);
        return sink;
    }

    [Theory]
    [MemberData(nameof(Layouts))]
    public async Task WhatQemuImgConvertWritesIsDecodedDirectly(string name, string[] qemuOptions)
    {
        using var dir = new TempDir();
        string raw = Qcow2Fixtures.Raw(dir, (9L << 20) + 1536, seed: name.Length + 40);
        string qcow2 = Qcow2Fixtures.Convert(dir, raw, name + ".qcow2", qemuOptions);
        string zst = TestInputs.Compressed(dir, "zstd", qcow2, ".zst", "-q");

        var sink = await Stream(zst, dir.File("out.raw"), Options(dir, DiskImageFormat.Raw));
        Assert.Equal(File.ReadAllBytes(raw), File.ReadAllBytes(dir.File("out.raw")));
        Assert.Contains(sink.Lines, l => l.StartsWith(Direct, StringComparison.Ordinal));
        Assert.DoesNotContain(sink.Lines, l => l.Contains(Spooling, StringComparison.Ordinal));

        // The plain qcow2 as a stream too (a .qcow2 layer without compression), to a fixed VHD.
        sink = await Stream(qcow2, dir.File("out.vhd"), Options(dir, DiskImageFormat.Vhd));
        Assert.Contains(sink.Lines, l => l.StartsWith(Direct, StringComparison.Ordinal));
        Assert.Equal(TestInputs.RoundUp(new FileInfo(raw).Length, 1 << 20), ImageTools.VirtualSize(dir.File("out.vhd"), "vpc"));
        Qcow2Fixtures.Qemu("resize", "-f", "raw", raw, TestInputs.RoundUp(new FileInfo(raw).Length, 1 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture));
        ImageTools.AssertIdentical(raw, dir.File("out.vhd"), "vpc");
        Assert.Empty(Directory.GetFiles(dir.Path, ".*"));
    }

    /// <summary>The same image with its only L2 table moved to the end of the file, after all the data it maps.</summary>
    private static string L2AtTheEnd(TempDir dir, string qcow2)
    {
        var b = File.ReadAllBytes(qcow2);
        int cs = 1 << (int)BinaryPrimitives.ReadUInt32BigEndian(b.AsSpan(20));
        long l1 = (long)BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(40));
        ulong entry = BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan((int)l1));
        long l2 = (long)(entry & 0x00FFFFFFFFFFFE00);
        long end = TestInputs.RoundUp(b.Length, cs);
        var moved = new byte[end + cs];
        b.CopyTo(moved, 0);
        b.AsSpan((int)l2, cs).CopyTo(moved.AsSpan((int)end));
        moved.AsSpan((int)l2, cs).Clear(); // the old table is gone: only the moved one maps the data
        BinaryPrimitives.WriteUInt64BigEndian(moved.AsSpan((int)l1), (1UL << 63) | (ulong)end);
        string path = dir.File("l2-last.qcow2");
        File.WriteAllBytes(path, moved);
        return path;
    }

    [Fact]
    public async Task AnL2TableAfterTheDataItMapsIsSpooledOnceAndTheSpoolRemoved()
    {
        using var dir = new TempDir();
        string raw = Qcow2Fixtures.Raw(dir, 48L << 20, seed: 3); // about 29 MiB of qcow2: past the 16 MiB held in memory
        string input = L2AtTheEnd(dir, Qcow2Fixtures.Convert(dir, raw, "in.qcow2"));
        Qcow2Fixtures.AssertSameBytes(File.ReadAllBytes(raw), Qcow2Fixtures.OracleRaw(dir, input));
        File.Delete(dir.File("l2-last.qcow2.oracle.raw"));
        string zst = TestInputs.Compressed(dir, "zstd", input, ".zst", "-q");

        var sink = await Stream(zst, dir.File("out.raw"), Options(dir, DiskImageFormat.Raw));
        Assert.Equal(File.ReadAllBytes(raw), File.ReadAllBytes(dir.File("out.raw")));
        Assert.Contains(sink.Lines, l => l.Contains(Spooling, StringComparison.Ordinal));
        Assert.DoesNotContain(sink.Lines, l => l.StartsWith(Direct, StringComparison.Ordinal));
        Assert.Empty(Directory.GetFiles(dir.Path, ".*"));
    }

    [Fact]
    public async Task AnImageRewrittenByQemuIoIsSpooledAndReadsLikeQemu()
    {
        using var dir = new TempDir();
        string raw = Qcow2Fixtures.Raw(dir, 40L << 20, seed: 8);
        string qcow2 = Qcow2Fixtures.Convert(dir, raw, "w.qcow2");
        // After a snapshot, a write copies the L2 table and the cluster to the end: the first guest cluster and its table come last.
        Qcow2Fixtures.Qemu("snapshot", "-c", "s", qcow2);
        var (code, output) = ImageTools.Run("qemu-io", "-c", "write -P 0x99 0 4k", qcow2);
        Assert.True(code == 0, output);
        byte[] expected = Qcow2Fixtures.OracleRaw(dir, qcow2);
        File.Delete(dir.File("w.qcow2.oracle.raw"));

        var sink = await Stream(qcow2, dir.File("out.raw"), Options(dir, DiskImageFormat.Raw));
        Qcow2Fixtures.AssertSameBytes(expected, File.ReadAllBytes(dir.File("out.raw")));
        Assert.Contains(sink.Lines, l => l.Contains(Spooling, StringComparison.Ordinal));
        Assert.Empty(Directory.GetFiles(dir.Path, ".*"));
    }

    [Fact]
    public async Task AHostClusterSharedAcrossL2TablesIsUnsupportedFromAStreamAndDecodedFromAFile()
    {
        using var dir = new TempDir();
        string raw = Qcow2Fixtures.Raw(dir, 4L << 20, seed: 12);
        // 4 KiB clusters: one L2 table per 2 MiB of guest. The second table's first entry is made to share the
        // host cluster of the first table's first data cluster, long released when the second table arrives.
        byte[] b = File.ReadAllBytes(Qcow2Fixtures.Convert(dir, raw, "s.qcow2", "-o", "cluster_size=4096"));
        long l1 = (long)BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan(40));
        long l2a = (long)(BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan((int)l1)) & 0x00FFFFFFFFFFFE00);
        long l2b = (long)(BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan((int)l1 + 8)) & 0x00FFFFFFFFFFFE00);
        int first = Enumerable.Range(0, 512).First(i => BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan((int)l2a + (i * 8))) != 0);
        Assert.True(l2b > (long)(BinaryPrimitives.ReadUInt64BigEndian(b.AsSpan((int)l2a + (first * 8))) & 0x00FFFFFFFFFFFE00) + (256 << 10), "fixture: the second table comes well after");
        b.AsSpan((int)l2a + (first * 8), 8).CopyTo(b.AsSpan((int)l2b));
        string shared = dir.File("shared.qcow2");
        File.WriteAllBytes(shared, b);
        byte[] expected = Qcow2Fixtures.OracleRaw(dir, shared);
        File.Delete(dir.File("shared.qcow2.oracle.raw"));
        string zst = TestInputs.Compressed(dir, "zstd", shared, ".zst", "-q");

        var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Stream(zst, dir.File("s.raw"), Options(dir, DiskImageFormat.Raw)));
        Assert.Equal(ErrorCode.UnsupportedFormat, ex.Code);
        File.Delete(dir.File("s.raw"));

        // From a file the converter reads it again: decompressed once beside the target, then read by random access.
        var sink = new ListSink();
        await DiskImageConverter.ConvertFileAsync(zst, dir.File("f.raw"), Options(dir, DiskImageFormat.Raw), sink, _timeout);
        Qcow2Fixtures.AssertSameBytes(expected, File.ReadAllBytes(dir.File("f.raw")));
        Assert.Contains(sink.Lines, l => l.Contains("Decompressing the qcow2 once to a spool", StringComparison.Ordinal));
        Assert.Empty(Directory.GetFiles(dir.Path, ".*"));
    }

    [Fact]
    public async Task AStreamCutShortIsCorruptAndLeavesNoSpool()
    {
        using var dir = new TempDir();
        string raw = Qcow2Fixtures.Raw(dir, 9L << 20, seed: 6);
        byte[] good = File.ReadAllBytes(Qcow2Fixtures.Convert(dir, raw, "c.qcow2", "-c"));
        byte[] moved = File.ReadAllBytes(L2AtTheEnd(dir, dir.File("c.qcow2")));
        foreach (var (bytes, length) in new[] { (good, good.Length / 2), (good, 70_000), (moved, moved.Length - 100) })
        {
            string cut = dir.File("cut.qcow2");
            File.WriteAllBytes(cut, bytes.AsSpan(0, length).ToArray());
            string output = dir.File("out.raw");
            var ex = await Assert.ThrowsAsync<OrasStagingException>(() => Stream(cut, output, Options(dir, DiskImageFormat.Raw)));
            Assert.Equal(ErrorCode.CorruptInput, ex.Code);
            Assert.Empty(Directory.GetFiles(dir.Path, ".*"));
            File.Delete(output); // the caller's part (the cmdlets delete their partial)
        }
    }
}
