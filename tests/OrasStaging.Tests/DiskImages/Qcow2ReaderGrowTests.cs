using System.Diagnostics;
using OrasStaging.DiskImages.Qcow2;

namespace OrasStaging.Tests.DiskImages;

public class Qcow2ReaderGrowTests
{
    private const long GiB = 1L << 30;

    /// <summary>name, qemu-img options, growth, whether the L1 table must move, whether the refcount table must move.</summary>
    public static TheoryData<string, string[], long, bool, bool> Cases => new()
    {
        { "default-8g", [], 8 * GiB, false, false },        // L1 grows inside its own cluster
        { "zlib-4k-1g", ["-c", "-o", "cluster_size=4096"], GiB, true, false },
        { "c512-32g", ["-o", "cluster_size=512"], 32 * GiB, true, true },  // new refcount blocks and a larger table
        { "v2-512-1g", ["-o", "compat=0.10,cluster_size=512"], GiB, true, false },
        { "refcount1-512-1g", ["-o", "refcount_bits=1,cluster_size=512"], GiB, true, false },
        { "refcount64-4k-2g", ["-o", "refcount_bits=64,cluster_size=4096"], 2 * GiB, true, false },
        { "none", [], 0, false, false },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void GrowsInPlaceLikeQemuResize(string name, string[] options, long growBy, bool l1Moves, bool reftableMoves)
    {
        var sw = Stopwatch.StartNew();
        using var dir = new TempDir();
        string raw = Qcow2Fixtures.Raw(dir, (6L << 20) + 512, seed: name.Length);
        string qcow2 = Qcow2Fixtures.Convert(dir, raw, name + ".qcow2", options);
        long oldSize = new FileInfo(raw).Length;
        long before = new FileInfo(qcow2).Length;

        var result = Qcow2Grow.Grow(qcow2, oldSize + growBy);

        Assert.Equal(oldSize, result.OldVirtualSize);
        Assert.Equal(l1Moves, result.L1Moved);
        Assert.Equal(reftableMoves, result.ReftableMoved);
        Assert.Equal(oldSize + growBy, ImageTools.VirtualSize(qcow2, "qcow2"));
        ImageTools.AssertCheckClean(qcow2);
        ImageTools.AssertIdentical(raw, qcow2, "qcow2"); // the grown tail must read as zeros for compare to pass
        Assert.True(new FileInfo(qcow2).Length - before < 16L << 20, "growth rewrote more than tables");
        Assert.True(sw.Elapsed < TimeSpan.FromSeconds(10), $"{name} took {sw.Elapsed}");
    }

    [Fact]
    public void GrowsAnImageWithASnapshotAndReadsTheResult()
    {
        using var dir = new TempDir();
        string raw = Qcow2Fixtures.Raw(dir, 3L << 20, seed: 21);
        string qcow2 = Qcow2Fixtures.Convert(dir, raw, "s.qcow2", "-o", "cluster_size=4096");
        Qcow2Fixtures.Qemu("snapshot", "-c", "first", qcow2);
        var result = Qcow2Grow.Grow(qcow2, (3L << 20) + GiB);
        Assert.True(result.L1Moved);
        ImageTools.AssertCheckClean(qcow2);
        ImageTools.AssertIdentical(raw, qcow2, "qcow2");
        Assert.Contains("first", Qcow2Fixtures.Qemu("snapshot", "-l", qcow2));

        using var image = Qcow2Image.Open(qcow2);
        using var reader = new Qcow2Reader(image);
        var tail = new byte[1 << 20];
        reader.Read(image.VirtualSize - tail.Length, tail);
        Assert.True(tail.AsSpan().IndexOfAnyExcept((byte)0) < 0);
    }

    [Fact]
    public void RefusesToShrinkOrMisalign()
    {
        using var dir = new TempDir();
        string raw = Qcow2Fixtures.Raw(dir, 1L << 20, seed: 2);
        string qcow2 = Qcow2Fixtures.Convert(dir, raw, "x.qcow2");
        byte[] before = File.ReadAllBytes(qcow2);
        foreach (long size in new[] { (1L << 20) - 512, (1L << 20) + 100 })
        {
            var ex = Assert.Throws<OrasStagingException>(() => Qcow2Grow.Grow(qcow2, size));
            Assert.Equal(ErrorCode.InvalidArgument, ex.Code);
        }

        Assert.Equal(before, File.ReadAllBytes(qcow2));
    }
}
