using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;

namespace OrasStaging.DiskImages.Qcow2;

/// <summary>What <see cref="Qcow2Grow.Grow"/> did.</summary>
internal readonly record struct Qcow2GrowResult(long OldVirtualSize, long NewVirtualSize, bool L1Moved, bool ReftableMoved, long FileLength);

/// <summary>
/// Grows a qcow2 image in place, for a file that is already the caller's own copy (the target's partial):
/// no data moves. Only the virtual size changes when the L1 table already has the entries; the L1 table grows
/// into its own last cluster when that is enough; otherwise a larger L1 is appended, cluster-aligned, with the
/// refcount blocks (and, if needed, a larger refcount table) that count the new clusters, and the old L1 is
/// released. New tables are written and flushed before the header points at them, and the old L1 is freed
/// only after, so an interruption leaks a cluster at worst. The result passes 'qemu-img check' without leaks.
/// </summary>
internal static class Qcow2Grow
{
    /// <summary>
    /// Grows the image at <paramref name="path"/>. <paramref name="flushSteps"/> false: the file is an uncommitted
    /// partial whose caller fsyncs once before committing it, so the ordering flushes between the steps are skipped
    /// (an interruption discards the partial anyway); each costs a full flush of a freshly copied image.
    /// </summary>
    public static Qcow2GrowResult Grow(string path, long newVirtualSize, bool flushSteps = true)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.None, bufferSize: 0);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            throw new OrasStagingException(ErrorCode.PathNotFound, $"The qcow2 image '{path}' does not exist.", null, ex);
        }

        using (stream)
        using (var image = Qcow2Image.Open(stream.SafeFileHandle, ownsHandle: false))
        {
            try
            {
                return Grow(image, newVirtualSize, flushSteps ? () => stream.Flush(flushToDisk: true) : () => { });
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                throw new OrasStagingException(ErrorCode.DestinationNotWritable, $"Growing '{path}' failed: {ex.Message}", null, ex);
            }
        }
    }

    private static Qcow2GrowResult Grow(Qcow2Image image, long newSize, Action flush)
    {
        var h = image.Header;
        var file = image.Handle;
        if (newSize < h.VirtualSize || newSize % 512 != 0)
        {
            throw new OrasStagingException(ErrorCode.InvalidArgument,
                $"A qcow2 image of {h.VirtualSize} bytes can only grow, to a multiple of 512 bytes; {newSize} is not.");
        }

        if (h.HasBitmaps)
        {
            throw Qcow2Header.Unsupported("persistent dirty bitmaps (their size follows the disk's; growing would invalidate them)");
        }

        long cs = h.ClusterSize;
        long needed = newSize == 0 ? 0 : 1 + ((newSize - 1) / h.BytesPerL2);
        if (needed * 8 > Qcow2Header.MaxL1Bytes)
        {
            throw Qcow2Header.Unsupported($"a virtual size of {newSize} bytes needs an L1 table above qemu's 32 MiB at {cs}-byte clusters");
        }

        var header = new byte[Qcow2Header.V2Length];
        Qcow2Image.ReadExactly(file, header, 0);
        BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(24), (ulong)newSize);
        long oldL1Clusters = CeilDiv(h.L1Entries * 8, cs);
        long newL1Clusters = CeilDiv(needed * 8, cs);
        if (needed <= h.L1Entries)
        {
            WriteHeader(file, header, flush);
            return new(h.VirtualSize, newSize, false, false, image.FileLength);
        }

        if (h.L1Entries > 0 && newL1Clusters <= oldL1Clusters)
        {
            // The L1 table's last cluster already belongs to it: its tail need not be zero, so zero it, then extend.
            long tail = h.L1Offset + (h.L1Entries * 8);
            RandomAccess.Write(file, new byte[(needed - h.L1Entries) * 8], tail);
            flush();
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(36), (uint)needed);
            WriteHeader(file, header, flush);
            return new(h.VirtualSize, newSize, false, false, image.FileLength);
        }

        var refs = new Qcow2Refcounts(image);
        long first = CeilDiv(image.FileLength, cs);
        var plan = refs.PlanAppend(first, newL1Clusters);
        long l1At = (first + plan.NewBlocks.Count) * cs;
        long rtAt = l1At + (newL1Clusters * cs);

        var l1 = new byte[newL1Clusters * cs];
        Qcow2Image.ReadExactly(file, l1.AsSpan(0, (int)(h.L1Entries * 8)), h.L1Offset);
        RandomAccess.Write(file, l1, l1At);
        refs.Attach(plan, first, rtAt / cs);
        for (long c = first; c < first + plan.TotalClusters; c++)
        {
            refs.Set(c, 1);
        }

        refs.WriteBlocks();
        refs.WriteTable();
        flush();

        BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(36), (uint)needed);
        BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(40), (ulong)l1At);
        if (plan.TableClusters > 0)
        {
            BinaryPrimitives.WriteUInt64BigEndian(header.AsSpan(48), (ulong)rtAt);
            BinaryPrimitives.WriteUInt32BigEndian(header.AsSpan(56), (uint)plan.TableClusters);
        }

        WriteHeader(file, header, flush);

        // Only now that nothing points at them: release the old L1 (and the old refcount table if it moved).
        ReleaseClusters(refs, h.L1Offset / cs, oldL1Clusters);
        if (plan.TableClusters > 0)
        {
            ReleaseClusters(refs, h.ReftableOffset / cs, h.ReftableClusters);
        }

        refs.WriteBlocks();
        flush();
        return new(h.VirtualSize, newSize, true, plan.TableClusters > 0, (first + plan.TotalClusters) * cs);
    }

    private static void ReleaseClusters(Qcow2Refcounts refs, long firstCluster, long count)
    {
        for (long c = firstCluster; c < firstCluster + count; c++)
        {
            ulong r = refs.Get(c);
            if (r > 0)
            {
                refs.Set(c, r - 1);
            }
        }
    }

    /// <summary>One write of the first 72 bytes (size, L1 and refcount table fields together), then a flush.</summary>
    private static void WriteHeader(SafeFileHandle file, byte[] header, Action flush)
    {
        RandomAccess.Write(file, header, 0);
        flush();
    }

    internal static long CeilDiv(long a, long b) => a == 0 ? 0 : 1 + ((a - 1) / b);
}
