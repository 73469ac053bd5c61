using Microsoft.Win32.SafeHandles;
using OrasStaging.Devices;

namespace OrasStaging.DiskImages;

/// <summary>
/// The file the native writers (<see cref="RawWriter"/>, <see cref="Qcow2Writer"/>) write an image into.
/// New, every write goes to the file. Reused, the file is the partial a killed install of the same image left
/// (issue 12: a resumed install re-decodes what it had and would otherwise write the whole image again, and the disk
/// is what bounds that run): a write whose bytes the file already holds is skipped, and every range this run leaves
/// unwritten (the holes of a sparse raw, a tail past the new end) is made to read as zeros. So the file ends exactly
/// as a new write would leave it, whatever the old one held, and only what differs reaches the disk.
/// </summary>
internal sealed class ImageFile : IDisposable
{
    /// <summary>The unit of a compare: one read, one SequenceEqual, and at most this much rewritten when it differs.</summary>
    private const int CompareChunk = 1 << 20;

    private readonly FileStream _file;
    private readonly long _oldLength;
    private byte[]? _scratch;

    /// <summary>Reuse: everything before this offset has been written or made to read as zeros by this run.</summary>
    private long _covered;

    private readonly bool _punchHoles;

    private ImageFile(FileStream file, bool reuse, bool punchHoles)
    {
        _file = file;
        Reused = reuse;
        _punchHoles = punchHoles && OperatingSystem.IsLinux();
        _oldLength = reuse ? RandomAccess.GetLength(file.SafeFileHandle) : 0;
    }

    /// <summary>
    /// A new file at <paramref name="path"/>; with <paramref name="reuse"/>, the file already there if there is one.
    /// <paramref name="punchHoles"/>: false takes the portable path (read, write zeros) for what must read as zeros.
    /// </summary>
    public static ImageFile Open(string path, bool reuse, bool punchHoles = true)
    {
        bool existing = reuse && File.Exists(path);
        var file = new FileStream(path, existing ? FileMode.Open : FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, bufferSize: 0);
        return new ImageFile(file, existing, punchHoles);
    }

    /// <summary>The native writer of <paramref name="format"/> (qcow2, raw, or raw with a fixed-VHD footer) over a new or reused file.</summary>
    public static IImageTarget OpenWriter(string path, DiskImageFormat format, bool reuse = false)
    {
        var file = Open(path, reuse);
        try
        {
            return format == DiskImageFormat.Qcow2 ? new Qcow2Writer(file) : new RawWriter(file, vhdFooter: format == DiskImageFormat.Vhd);
        }
        catch
        {
            file.Dispose();
            throw;
        }
    }

    public SafeFileHandle Handle => _file.SafeFileHandle;

    /// <summary>True when the file was an earlier partial, compared rather than written over.</summary>
    public bool Reused { get; }

    /// <summary>Reuse: bytes the file already held and that were not written again.</summary>
    public long Matched { get; private set; }

    /// <summary>Reuse: bytes written because they differed, and old data cleared from ranges that must read as zeros.</summary>
    public long Rewritten { get; private set; }

    public void Write(ReadOnlySpan<byte> data, long offset)
    {
        if (!Reused)
        {
            RandomAccess.Write(Handle, data, offset);
            return;
        }

        ZeroUpTo(offset);
        for (int done = 0; done < data.Length;)
        {
            var part = data.Slice(done, Math.Min(CompareChunk, data.Length - done));
            if (Holds(part, offset + done))
            {
                Matched += part.Length;
            }
            else
            {
                RandomAccess.Write(Handle, part, offset + done);
                Rewritten += part.Length;
            }

            done += part.Length;
        }

        _covered = Math.Max(_covered, offset + data.Length);
    }

    public void Write(IReadOnlyList<ReadOnlyMemory<byte>> segments, long offset)
    {
        if (!Reused)
        {
            RandomAccess.Write(Handle, segments, offset);
            return;
        }

        foreach (var segment in segments)
        {
            Write(segment.Span, offset);
            offset += segment.Length;
        }
    }

    /// <summary>The image ends at <paramref name="length"/>: what this run did not write before it reads as zeros, and nothing follows it.</summary>
    public void EndAt(long length)
    {
        if (Reused)
        {
            ZeroUpTo(length);
        }

        if (RandomAccess.GetLength(Handle) != length)
        {
            RandomAccess.SetLength(Handle, length);
        }
    }

    public void Flush() => _file.Flush(flushToDisk: true);

    public void Dispose() => _file.Dispose();

    private bool Holds(ReadOnlySpan<byte> data, long offset)
    {
        if (offset + data.Length > _oldLength)
        {
            return false;
        }

        _scratch ??= new byte[CompareChunk];
        var old = _scratch.AsSpan(0, data.Length);
        for (int read = 0; read < old.Length;)
        {
            int n = RandomAccess.Read(Handle, old[read..], offset + read);
            if (n == 0)
            {
                return false;
            }

            read += n;
        }

        return old.SequenceEqual(data);
    }

    /// <summary>Reuse: the range from what is covered up to <paramref name="end"/> is one this run leaves unwritten, so it must read as zeros.</summary>
    private void ZeroUpTo(long end)
    {
        // Past the old length the file reads as zeros already. The range is not cut at that length: a block the old
        // end falls inside is then freed whole, as a new write would have left it, not only zero-filled.
        if (end > _covered && _covered < _oldLength)
        {
            MakeZero(_covered, end);
        }

        _covered = Math.Max(_covered, end);
    }

    private void MakeZero(long from, long to)
    {
        if (_punchHoles)
        {
            bool added = false;
            try
            {
                Handle.DangerousAddRef(ref added);
                int fd = (int)Handle.DangerousGetHandle();
                // A hole, or no data at all before the range's end: nothing to do, without reading it.
                long data = LinuxNative.LSeek(fd, from, LinuxNative.SeekData);
                if (data < 0 ? LinuxNative.LastError == LinuxNative.ENxIo : data >= to)
                {
                    return;
                }

                long start = data < 0 ? from : data;
                if (LinuxNative.FAllocate(fd, LinuxNative.FallocPunchHole | LinuxNative.FallocKeepSize, start, to - start) == 0)
                {
                    Rewritten += to - start;
                    return;
                }
            }
            catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
            {
            }
            finally
            {
                if (added)
                {
                    Handle.DangerousRelease();
                }
            }
        }

        // No SEEK_DATA or hole punching here: read the range and write zeros where it holds anything else.
        _scratch ??= new byte[CompareChunk];
        byte[]? zeros = null;
        for (long at = from; at < to;)
        {
            var old = _scratch.AsSpan(0, (int)Math.Min(CompareChunk, to - at));
            int n = RandomAccess.Read(Handle, old, at);
            if (n == 0)
            {
                return;
            }

            if (old[..n].IndexOfAnyExcept((byte)0) >= 0)
            {
                zeros ??= new byte[CompareChunk];
                RandomAccess.Write(Handle, zeros.AsSpan(0, n), at);
                Rewritten += n;
            }

            at += n;
        }
    }
}
