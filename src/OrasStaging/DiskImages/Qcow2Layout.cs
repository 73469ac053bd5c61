namespace OrasStaging.DiskImages;

/// <summary>The sizing arithmetic of the one-pass qcow2 writer (disk-formats.md §1), kept pure so it is unit-testable.</summary>
internal static class Qcow2Layout
{
    public const int ClusterBits = 16;
    public const int ClusterSize = 1 << ClusterBits;
    public const int RefcountOrder = 4;

    /// <summary>Refcount entries per block: one block covers 2 GiB of file.</summary>
    public const long RefcountsPerBlock = ClusterSize * 8L >> RefcountOrder;

    /// <summary>Pointers per cluster of L1, L2 or reftable.</summary>
    public const long EntriesPerCluster = ClusterSize / 8;

    /// <summary>Guest bytes one L2 table maps: 512 MiB.</summary>
    public const long BytesPerL2 = EntriesPerCluster * ClusterSize;

    public static long CeilDiv(long a, long b) => a == 0 ? 0 : 1 + ((a - 1) / b);

    /// <summary>L1 entries qemu requires for a virtual size, else "L1 table is too small".</summary>
    public static long L1Entries(long virtualSize) => CeilDiv(virtualSize, BytesPerL2);

    public static long L1Clusters(long l1Entries) => CeilDiv(l1Entries * 8, ClusterSize);

    /// <summary>
    /// Refcount blocks and reftable clusters for a file of <paramref name="otherClusters"/> clusters plus the
    /// refcount structures themselves, which must count themselves too: iterate to the fixpoint.
    /// </summary>
    public static (long Blocks, long TableClusters) RefcountLayout(long otherClusters)
    {
        long rb = 0, rt = 0;
        while (true)
        {
            long rb2 = CeilDiv(otherClusters + rt + rb, RefcountsPerBlock);
            long rt2 = Math.Max(1, CeilDiv(rb2 * 8, ClusterSize));
            if (rb2 == rb && rt2 == rt)
            {
                return (rb, rt);
            }

            rb = rb2;
            rt = rt2;
        }
    }
}
