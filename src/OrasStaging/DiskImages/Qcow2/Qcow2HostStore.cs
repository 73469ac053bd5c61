using System.Buffers;
using Microsoft.Win32.SafeHandles;
using OrasStaging.IO;

namespace OrasStaging.DiskImages.Qcow2;

/// <summary>
/// The host bytes of a qcow2 read from a stream that are still needed, in blocks of a fixed size keyed by host
/// offset: kept in memory up to a cap, then spooled (once, at their host offset, in a sparse file beside the
/// target). A block is released once every byte of it is explained (metadata already parsed, or data already
/// written out) and no pending guest cluster reads it, or once the whole mapping is known and nothing reads it.
/// A qemu-img convert layout keeps only a few blocks; data stored ahead of its L2 table fills the spool instead.
/// </summary>
internal sealed class Qcow2HostStore : IDisposable
{
    private readonly Dictionary<long, Block> _blocks = new();
    private readonly Dictionary<long, int> _pending = new();
    private readonly HashSet<long> _candidates = new();
    private readonly string _spoolBeside;
    private readonly long _memoryCap;
    private readonly Action<string> _onSpool;
    private PartialFile? _spool;
    private FileStream? _spoolFile;
    private long _inMemory;

    public Qcow2HostStore(int blockSize, string spoolBeside, long memoryCap, Action<string> onSpool)
    {
        BlockSize = blockSize;
        _spoolBeside = spoolBeside;
        _memoryCap = memoryCap;
        _onSpool = onSpool;
    }

    public int BlockSize { get; }

    /// <summary>Host bytes received so far (the stream position).</summary>
    public long Position { get; private set; }

    /// <summary>Bytes written to the spool; 0 when the stream was decoded directly.</summary>
    public long SpooledBytes { get; private set; }

    /// <summary>Peak bytes held in memory.</summary>
    public long PeakMemory { get; private set; }

    /// <summary>When set, every block no pending read needs may go: all the tables are known.</summary>
    public bool MappingComplete { get; set; }

    /// <summary>Appends the next host bytes of the stream.</summary>
    public void Append(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            long b = Position / BlockSize;
            int at = (int)(Position % BlockSize);
            int n = Math.Min(data.Length, BlockSize - at);
            if (!_blocks.TryGetValue(b, out var block))
            {
                block = new Block(ArrayPool<byte>.Shared.Rent(BlockSize));
                _blocks[b] = block;
                _inMemory += BlockSize;
                PeakMemory = Math.Max(PeakMemory, _inMemory);
            }

            if (block.Spooled)
            {
                // The block being filled when the spool began: the rest of it goes to the spool too.
                RandomAccess.Write(_spoolFile!.SafeFileHandle, data[..n], Position);
                SpooledBytes += n;
            }
            else
            {
                data[..n].CopyTo(block.Data.AsSpan(at));
            }

            data = data[n..];
            Position += n;
            if (at + n == BlockSize)
            {
                _candidates.Add(b);
            }
        }

        if (_inMemory > _memoryCap)
        {
            Spool();
        }
    }

    /// <summary>Copies stored bytes at <paramref name="offset"/>; false when a block was already released (or never came).</summary>
    public bool TryRead(long offset, Span<byte> into)
    {
        if (offset < 0 || offset + into.Length > Position)
        {
            return false;
        }

        while (!into.IsEmpty)
        {
            long b = offset / BlockSize;
            int at = (int)(offset % BlockSize);
            int n = Math.Min(into.Length, BlockSize - at);
            if (!_blocks.TryGetValue(b, out var block))
            {
                return false;
            }

            if (block.Spooled)
            {
                Qcow2Image.ReadExactly(_spoolFile!.SafeFileHandle, into[..n], offset);
            }
            else
            {
                block.Data.AsSpan(at, n).CopyTo(into);
            }

            into = into[n..];
            offset += n;
        }

        return true;
    }

    /// <summary>Whether every block of [offset, offset + length) that has arrived is still held.</summary>
    public bool Holds(long offset, long length)
    {
        long end = Math.Min(offset + length, Position);
        for (long b = offset / BlockSize; b * BlockSize < end; b++)
        {
            if (!_blocks.ContainsKey(b))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>A guest cluster yet to be written reads [offset, offset + length): its blocks stay (+1) or may go (-1).</summary>
    public void Pend(long offset, long length, int delta)
    {
        for (long b = offset / BlockSize; b * BlockSize < offset + length; b++)
        {
            int n = _pending.GetValueOrDefault(b) + delta;
            if (n == 0)
            {
                _pending.Remove(b);
                _candidates.Add(b);
            }
            else
            {
                _pending[b] = n;
            }
        }
    }

    /// <summary>The bytes [offset, offset + length) are accounted for: parsed as metadata or written out as data.</summary>
    public void Explain(long offset, long length)
    {
        long end = offset + length;
        for (long b = offset / BlockSize; b * BlockSize < end; b++)
        {
            if (!_blocks.TryGetValue(b, out var block))
            {
                continue;
            }

            long start = b * BlockSize;
            block.Cover(Math.Max(offset, start) - start, Math.Min(end, start + BlockSize) - start);
            _candidates.Add(b);
        }
    }

    /// <summary>Drops the blocks nothing needs any more.</summary>
    public void Release()
    {
        if (MappingComplete)
        {
            foreach (long b in _blocks.Keys)
            {
                _candidates.Add(b);
            }
        }

        foreach (long b in _candidates)
        {
            if (!_blocks.TryGetValue(b, out var block) || (b + 1) * BlockSize > Position || _pending.ContainsKey(b))
            {
                continue;
            }

            if (MappingComplete || block.Covers(BlockSize))
            {
                if (!block.Spooled)
                {
                    _inMemory -= BlockSize;
                }

                block.Return();
                _blocks.Remove(b);
            }
        }

        _candidates.Clear();
    }

    /// <summary>Moves every block in memory to the spool file, creating it on first use.</summary>
    private void Spool()
    {
        if (_spool is null)
        {
            _spool = PartialFile.HiddenBeside(_spoolBeside, "qcow2");
            _spoolFile = new FileStream(_spool.PartialPath, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, bufferSize: 0);
            SparseFile.MarkSparse(_spoolFile.SafeFileHandle);
            _onSpool(Path.GetFileName(_spool.PartialPath));
        }

        SafeFileHandle handle = _spoolFile!.SafeFileHandle;
        foreach (var (b, block) in _blocks)
        {
            if (block.Spooled)
            {
                continue;
            }

            long start = b * BlockSize;
            int length = (int)Math.Min(BlockSize, Position - start);
            RandomAccess.Write(handle, block.Data.AsSpan(0, length), start);
            SpooledBytes += length;
            block.Return();
            block.Spooled = true;
            _inMemory -= BlockSize;
        }
    }

    public void Dispose()
    {
        foreach (var block in _blocks.Values)
        {
            block.Return();
        }

        _blocks.Clear();
        _spoolFile?.Dispose();
        _spool?.Dispose();
    }

    private sealed class Block
    {
        // Explained byte ranges within the block, merged and sorted; few, as data is written out roughly in host order.
        private readonly List<(long Start, long End)> _covered = new(2);
        private byte[]? _data;

        public Block(byte[] data) => _data = data;

        public byte[] Data => _data!;

        public bool Spooled { get; set; }

        public void Cover(long start, long end)
        {
            int i = 0;
            while (i < _covered.Count && _covered[i].End < start)
            {
                i++;
            }

            while (i < _covered.Count && _covered[i].Start <= end)
            {
                start = Math.Min(start, _covered[i].Start);
                end = Math.Max(end, _covered[i].End);
                _covered.RemoveAt(i);
            }

            _covered.Insert(i, (start, end));
        }

        public bool Covers(long size) => _covered.Count == 1 && _covered[0].Start == 0 && _covered[0].End >= size;

        public void Return()
        {
            if (_data is not null)
            {
                ArrayPool<byte>.Shared.Return(_data);
                _data = null;
            }
        }
    }
}
