using System.Buffers.Binary;

namespace OrasStaging.DiskImages.Qcow2;

/// <summary>
/// The refcount table and blocks of an image being grown: read on demand, changed in memory, written back by
/// <see cref="WriteBlocks"/>. Entries are 2^refcount_order bits wide, big-endian from 8 bits up and packed
/// least-significant bits first below that (qcow2.txt "Refcount block entry").
/// </summary>
internal sealed class Qcow2Refcounts
{
    private readonly Qcow2Image _image;
    private readonly int _bits;
    private readonly long _cs;
    private readonly Dictionary<long, byte[]> _dirty = new();
    private readonly HashSet<long> _changedEntries = new();
    private ulong[] _table;
    private long _tableAt;
    private bool _tableMoved;

    public Qcow2Refcounts(Qcow2Image image)
    {
        _image = image;
        var h = image.Header;
        _cs = h.ClusterSize;
        _bits = 1 << h.RefcountOrder;
        var raw = new byte[h.ReftableClusters * _cs]; // bounded to 8 MiB and the file by Qcow2Header
        Qcow2Image.ReadExactly(image.Handle, raw, h.ReftableOffset);
        _table = new ulong[raw.Length / 8];
        for (int i = 0; i < _table.Length; i++)
        {
            _table[i] = BinaryPrimitives.ReadUInt64BigEndian(raw.AsSpan(i * 8));
        }

        _tableAt = h.ReftableOffset;
    }

    /// <summary>Refcounts one block holds.</summary>
    public long EntriesPerBlock => _cs * 8 / _bits;

    public readonly record struct Plan(List<long> NewBlocks, long TableClusters, long TotalClusters);

    /// <summary>
    /// Clusters to append at <paramref name="first"/>: refcount blocks for the table slots the new range needs,
    /// then <paramref name="payload"/> clusters, then a larger table when the slots run past the current one;
    /// they count themselves, so iterate to the fixpoint.
    /// </summary>
    public Plan PlanAppend(long first, long payload)
    {
        var blocks = new List<long>();
        long tableClusters = 0;
        while (true)
        {
            long total = blocks.Count + payload + tableClusters;
            long last = first + total - 1;
            var blocks2 = new List<long>();
            for (long idx = first / EntriesPerBlock; idx <= last / EntriesPerBlock; idx++)
            {
                if (idx >= _table.Length || _table[idx] == 0)
                {
                    blocks2.Add(idx);
                }
            }

            long maxIdx = last / EntriesPerBlock;
            long table2 = maxIdx >= _table.Length ? Qcow2Grow.CeilDiv((maxIdx + 1) * 8, _cs) : 0;
            if (table2 * _cs > Qcow2Header.MaxReftableBytes)
            {
                throw Qcow2Header.Unsupported("growing would need a refcount table above qemu's 8 MiB");
            }

            if (blocks2.Count == blocks.Count && table2 == tableClusters)
            {
                return new Plan(blocks, tableClusters, total);
            }

            blocks = blocks2;
            tableClusters = table2;
        }
    }

    /// <summary>Places the plan's new blocks from cluster <paramref name="first"/> and its table (if any) at <paramref name="tableCluster"/>.</summary>
    public void Attach(Plan plan, long first, long tableCluster)
    {
        if (plan.TableClusters > 0)
        {
            Array.Resize(ref _table, (int)(plan.TableClusters * _cs / 8));
            _tableAt = tableCluster * _cs;
            _tableMoved = true;
        }

        for (int j = 0; j < plan.NewBlocks.Count; j++)
        {
            long idx = plan.NewBlocks[j];
            _table[idx] = (ulong)((first + j) * _cs);
            _dirty[idx] = new byte[_cs];
            _changedEntries.Add(idx);
        }
    }

    public ulong Get(long cluster)
    {
        var (block, i) = Locate(cluster);
        if (block is null)
        {
            return 0;
        }

        if (_bits >= 8)
        {
            int width = _bits / 8, at = (int)(i * width);
            ulong v = 0;
            for (int k = 0; k < width; k++)
            {
                v = (v << 8) | block[at + k];
            }

            return v;
        }

        long bit = i * _bits;
        return (ulong)((block[bit / 8] >> (int)(bit % 8)) & ((1 << _bits) - 1));
    }

    public void Set(long cluster, ulong value)
    {
        var (block, i) = Locate(cluster);
        if (block is null)
        {
            throw Qcow2Header.Corrupt($"cluster {cluster} has no refcount block");
        }

        if (_bits >= 8)
        {
            int width = _bits / 8, at = (int)(i * width);
            for (int k = width - 1; k >= 0; k--)
            {
                block[at + k] = (byte)value;
                value >>= 8;
            }

            return;
        }

        long bit = i * _bits;
        int shift = (int)(bit % 8), mask = ((1 << _bits) - 1) << shift;
        block[bit / 8] = (byte)((block[bit / 8] & ~mask) | (((int)value << shift) & mask));
    }

    private (byte[]? Block, long Index) Locate(long cluster)
    {
        long idx = cluster / EntriesPerBlock;
        long i = cluster % EntriesPerBlock;
        if (_dirty.TryGetValue(idx, out var block))
        {
            return (block, i);
        }

        if (idx >= _table.Length || _table[idx] == 0)
        {
            return (null, i);
        }

        long at = (long)(_table[idx] & ~0x1FFUL);
        if ((_table[idx] & 0x1FF) != 0 || at % _cs != 0 || at < _cs || at > _image.FileLength - _cs)
        {
            throw Qcow2Header.Corrupt($"refcount table entry {idx} points at {at}, not a cluster inside the file");
        }

        block = new byte[_cs];
        Qcow2Image.ReadExactly(_image.Handle, block, at);
        _dirty[idx] = block;
        return (block, i);
    }

    public void WriteBlocks()
    {
        foreach (var (idx, block) in _dirty)
        {
            RandomAccess.Write(_image.Handle, block, (long)(_table[idx] & ~0x1FFUL));
        }
    }

    /// <summary>Writes the whole table at its new place, or only the entries that changed in place.</summary>
    public void WriteTable()
    {
        if (_tableMoved)
        {
            var raw = new byte[_table.Length * 8];
            for (int i = 0; i < _table.Length; i++)
            {
                BinaryPrimitives.WriteUInt64BigEndian(raw.AsSpan(i * 8), _table[i]);
            }

            RandomAccess.Write(_image.Handle, raw, _tableAt);
            return;
        }

        var entry = new byte[8];
        foreach (long idx in _changedEntries)
        {
            BinaryPrimitives.WriteUInt64BigEndian(entry, _table[idx]);
            RandomAccess.Write(_image.Handle, entry, _tableAt + (idx * 8));
        }
    }
}
