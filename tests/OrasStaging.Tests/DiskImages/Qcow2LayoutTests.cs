using OrasStaging.DiskImages;

namespace OrasStaging.Tests.DiskImages;

public class Qcow2LayoutTests
{
    private const long E = 32768; // refcounts per block at 64 KiB clusters, order 4: 2 GiB of file

    [Theory]
    [InlineData(0, 1, 1)]   // the reftable alone still needs a block that counts it
    [InlineData(1, 1, 1)]
    [InlineData(E - 2, 1, 1)]   // with RT and RB, exactly 2 GiB of file: one block
    [InlineData(E - 1, 2, 1)]   // one cluster more: a second block, which then counts itself
    [InlineData(E, 2, 1)]
    [InlineData(2 * E - 3, 2, 1)]
    [InlineData(2 * E - 2, 3, 1)]
    [InlineData(16_779_266, 513, 1)]  // 1 TiB fully allocated (disk-formats.md §1)
    public void RefcountFixpointAtBoundaries(long other, long blocks, long tableClusters)
    {
        var (rb, rt) = Qcow2Layout.RefcountLayout(other);
        Assert.Equal(blocks, rb);
        Assert.Equal(tableClusters, rt);
    }

    [Fact]
    public void RefcountFixpointAt16TiB()
    {
        // 16 TiB fully allocated: 2^28 data clusters, 32768 L2 tables, 32 L1 clusters.
        long m = 1 + (1L << 28) + 32768 + 32;
        Assert.Equal((8194L, 2L), Qcow2Layout.RefcountLayout(m));
    }

    [Theory]
    [InlineData(1L)]
    [InlineData(1000L)]
    [InlineData(E * 8192 - 5)]
    [InlineData(E * 8192 + 5)]
    public void RefcountFixpointCoversEveryClusterIncludingItself(long other)
    {
        var (rb, rt) = Qcow2Layout.RefcountLayout(other);
        long n = other + rb + rt;
        Assert.True(rb * E >= n, "the blocks must cover the whole file");
        Assert.True((rb - 1) * E < n, "no block beyond the file");
        Assert.True(rt * 8192 >= rb, "the table must point at every block");
    }

    [Theory]
    [InlineData(0L, 0L)]
    [InlineData(512L, 1L)]
    [InlineData(512L << 20, 1L)]
    [InlineData((512L << 20) + 512, 2L)]
    [InlineData(2L << 30, 4L)]
    [InlineData(2_000_000_000_000L, 3726L)]
    public void L1EntriesCoverEvery512MiBWindow(long size, long entries) => Assert.Equal(entries, Qcow2Layout.L1Entries(size));

    [Theory]
    [InlineData(0L, 0L)]
    [InlineData(1L, 1L)]
    [InlineData(8192L, 1L)]
    [InlineData(8193L, 2L)]
    public void L1ClustersHoldEightBytesPerEntry(long entries, long clusters) => Assert.Equal(clusters, Qcow2Layout.L1Clusters(entries));

    [Fact]
    public async Task ExactlyTwoWindowsOfDataGiveTwoL2Tables()
    {
        // 512 MiB + 64 KiB of sparse data with a data cluster at each end: two L2 tables, both right.
        using var dir = new TempDir();
        string raw = dir.File("in.raw");
        using (var f = File.Create(raw))
        {
            f.Write(new byte[] { 1 });
            f.Seek((512L << 20) - 1, SeekOrigin.Begin);
            f.Write(new byte[] { 2, 3 });
            f.SetLength((512L << 20) + 65536);
        }

        string output = dir.File("out.qcow2");
        await using (var input = File.OpenRead(raw))
        {
            await DiskImageWriter.WriteAsync(input, output, new DiskWriteOptions(), NullOperationSink.Instance, CancellationToken.None);
        }

        // header, 3 data clusters, 2 L2, 1 L1, 1 reftable, 1 refcount block
        Assert.Equal(9 * 65536, new FileInfo(output).Length);
        ImageTools.AssertCheckClean(output);
        ImageTools.AssertIdentical(raw, output, "qcow2");
    }
}
