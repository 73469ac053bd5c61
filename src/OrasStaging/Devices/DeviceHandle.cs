using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace OrasStaging.Devices;

/// <summary>
/// A managed array pinned for its lifetime (pinned object heap), with a window starting at a multiple of
/// <see cref="Alignment"/>: what O_DIRECT and unbuffered Windows I/O require of memory. Safe code only, so the
/// project needs no AllowUnsafeBlocks for NativeMemory.AlignedAlloc.
/// </summary>
internal sealed class AlignedBuffer
{
    public const int Alignment = 4096;

    public AlignedBuffer(int length)
    {
        Array = GC.AllocateUninitializedArray<byte>(length + Alignment, pinned: true);
        long address = Marshal.UnsafeAddrOfPinnedArrayElement(Array, 0).ToInt64();
        Offset = (int)((Alignment - (address % Alignment)) % Alignment);
        Length = length;
    }

    public byte[] Array { get; }

    public int Offset { get; }

    public int Length { get; }

    public Span<byte> Span => Array.AsSpan(Offset, Length);
}

/// <summary>
/// Positioned reads and writes on an open device, one implementation per platform. Linux uses libc directly so
/// that errno decides the fallbacks (EINVAL from O_DIRECT, ENOTTY from BLKZEROOUT); Windows and macOS go through
/// a SafeFileHandle.
/// </summary>
internal sealed class DeviceHandle : IDisposable
{
    private readonly string _node;
    private int _fd = -1;
    private SafeFileHandle? _handle;
    private bool _zeroOut = OperatingSystem.IsLinux();

    private DeviceHandle(string node) => _node = node;

    /// <summary>True while writes bypass the page cache (O_DIRECT, FILE_FLAG_NO_BUFFERING).</summary>
    public bool Direct { get; private set; }

    /// <summary>
    /// Opens <paramref name="device"/>. For writing on Linux the open is exclusive (O_EXCL): the kernel refuses it
    /// with EBUSY while a file system, swap, LVM or MD holds the device, whatever the checks before it missed.
    /// </summary>
    public static DeviceHandle Open(BlockDevice device, bool write, bool direct)
    {
        var h = new DeviceHandle(device.NodePath);
        if (OperatingSystem.IsLinux())
        {
            int flags = (write ? LinuxNative.ORdWr | LinuxNative.OExcl : LinuxNative.ORdOnly) | LinuxNative.OCloExec;
            int fd = LinuxNative.Open(device.NodePath, flags | (direct ? LinuxNative.ODirect : 0));
            if (fd < 0 && direct && LinuxNative.LastError == LinuxNative.EInval)
            {
                fd = LinuxNative.Open(device.NodePath, flags);
                direct = false;
            }

            if (fd < 0)
            {
                throw h.OpenFailure(LinuxNative.LastError, write);
            }

            h._fd = fd;
            h.Direct = direct;
            return h;
        }

        try
        {
            var options = direct && OperatingSystem.IsWindows() ? FileOptions.WriteThrough | (FileOptions)0x20000000 : FileOptions.None;
            h._handle = File.OpenHandle(device.NodePath, FileMode.Open, write ? FileAccess.ReadWrite : FileAccess.Read, FileShare.ReadWrite, options);
            h.Direct = options != FileOptions.None;
            return h;
        }
        catch (UnauthorizedAccessException)
        {
            throw DeviceSafety.PermissionDenied(device.NodePath);
        }
        catch (IOException ex)
        {
            throw new OrasStagingException(ErrorCode.DestinationNotWritable, $"Cannot open {device.NodePath}: {ex.Message}", null, ex);
        }
    }

    /// <summary>Writes all of array[offset..offset+count) at <paramref name="position"/>.</summary>
    public void WriteAt(byte[] array, int offset, int count, long position)
    {
        if (_handle is not null)
        {
            Guard(() => RandomAccess.Write(_handle, array.AsSpan(offset, count), position), position);
            return;
        }

        while (count > 0)
        {
            nint n = LinuxNative.PWrite(_fd, ref array[offset], count, position);
            if (n < 0)
            {
                int errno = LinuxNative.LastError;
                if (errno == LinuxNative.EIntr)
                {
                    continue;
                }

                if (errno == LinuxNative.EInval && Direct && DropDirect())
                {
                    continue; // the device or the memory did not meet O_DIRECT's alignment: go on buffered
                }

                throw IoFailure(errno, "writing", position);
            }

            offset += (int)n;
            count -= (int)n;
            position += n;
        }
    }

    /// <summary>Reads exactly <paramref name="count"/> bytes at <paramref name="position"/> (the range lies inside the device).</summary>
    public void ReadAt(byte[] array, int offset, int count, long position)
    {
        while (count > 0)
        {
            int n;
            if (_handle is not null)
            {
                int c = count;
                long p = position;
                int o = offset;
                n = 0;
                Guard(() => n = RandomAccess.Read(_handle, array.AsSpan(o, c), p), position);
            }
            else
            {
                nint r = LinuxNative.PRead(_fd, ref array[offset], count, position);
                if (r < 0)
                {
                    int errno = LinuxNative.LastError;
                    if (errno == LinuxNative.EIntr)
                    {
                        continue;
                    }

                    if (errno == LinuxNative.EInval && Direct && DropDirect())
                    {
                        continue;
                    }

                    throw IoFailure(errno, "reading", position);
                }

                n = (int)r;
            }

            if (n == 0)
            {
                throw new OrasStagingException(ErrorCode.DestinationNotWritable, $"{_node} ended at offset {position}, before its reported size.");
            }

            offset += n;
            count -= n;
            position += n;
        }
    }

    /// <summary>
    /// Zeroes [position, position+length) with BLKZEROOUT, which the kernel guarantees reads back as zeros (it
    /// writes zeros itself when the hardware cannot); unlike BLKDISCARD it never just unmaps. False when the kernel
    /// or the device does not offer it; the caller then writes the zeros.
    /// </summary>
    public bool TryZeroOut(long position, long length)
    {
        if (!_zeroOut)
        {
            return false;
        }

        var range = new[] { (ulong)position, (ulong)length };
        while (LinuxNative.IoctlRange(_fd, LinuxNative.BlkZeroOut, range) != 0)
        {
            int errno = LinuxNative.LastError;
            if (errno == LinuxNative.EIntr)
            {
                continue;
            }

            if (errno is LinuxNative.ENotTy or LinuxNative.EOpNotSupp or LinuxNative.EInval or LinuxNative.ENoSys or LinuxNative.EPerm)
            {
                _zeroOut = false;
                return false;
            }

            throw IoFailure(errno, "zeroing", position);
        }

        return true;
    }

    public void DisableZeroOut() => _zeroOut = false;

    /// <summary>Linux, buffered: starts writeback of a range (sync_file_range), so dirty pages do not pile up.</summary>
    public void StartWriteback(long position, long length)
    {
        if (_fd >= 0 && !Direct)
        {
            LinuxNative.SyncFileRange(_fd, position, length, LinuxNative.SyncFileRangeWrite);
        }
    }

    /// <summary>Linux, buffered: waits until a range is on the device; lets the final flush report progress.</summary>
    public void WaitWriteback(long position, long length)
    {
        if (_fd >= 0 && !Direct)
        {
            LinuxNative.SyncFileRange(_fd, position, length,
                LinuxNative.SyncFileRangeWaitBefore | LinuxNative.SyncFileRangeWrite | LinuxNative.SyncFileRangeWaitAfter);
        }
    }

    /// <summary>fsync: the written data and the device's volatile cache reach stable storage.</summary>
    public void Sync()
    {
        if (_handle is not null)
        {
            Guard(() =>
            {
                using var fs = new FileStream(_handle, FileAccess.ReadWrite, 0);
                fs.Flush(flushToDisk: true);
            }, 0);
            return;
        }

        while (LinuxNative.FSync(_fd) != 0)
        {
            int errno = LinuxNative.LastError;
            if (errno != LinuxNative.EIntr)
            {
                throw IoFailure(errno, "flushing", 0);
            }
        }
    }

    /// <summary>The size the open device reports (BLKGETSIZE64), or -1 where that is not asked.</summary>
    public long QuerySize() =>
        _fd >= 0 && LinuxNative.IoctlUInt64(_fd, LinuxNative.BlkGetSize64, out ulong size) == 0 ? (long)size : -1;

    public void Dispose()
    {
        if (_fd >= 0)
        {
            LinuxNative.Close(_fd);
            _fd = -1;
        }

        _handle?.Dispose();
    }

    private bool DropDirect()
    {
        int flags = LinuxNative.FcntlInt(_fd, LinuxNative.FGetFl, 0);
        if (flags < 0 || LinuxNative.FcntlInt(_fd, LinuxNative.FSetFl, flags & ~LinuxNative.ODirect) != 0)
        {
            return false;
        }

        Direct = false;
        return true;
    }

    private OrasStagingException OpenFailure(int errno, bool write) => errno switch
    {
        LinuxNative.EAcces or LinuxNative.EPerm => DeviceSafety.PermissionDenied(_node),
        LinuxNative.EBusy => DeviceSafety.Busy(_node),
        LinuxNative.ERoFs => new OrasStagingException(ErrorCode.DestinationNotWritable, $"{_node} is read-only. Nothing was written.", "Unlock the card or stick, or choose another device."),
        _ => new OrasStagingException(write ? ErrorCode.DestinationNotWritable : ErrorCode.InvalidArgument,
            $"Cannot open {_node}: {LinuxNative.Describe(errno)}."),
    };

    private OrasStagingException IoFailure(int errno, string doing, long position) => errno == LinuxNative.ENoSpc
        ? new OrasStagingException(ErrorCode.InsufficientSpace, $"{_node} ended while {doing} at offset {position}.", "Choose a larger device.")
        : new OrasStagingException(ErrorCode.DestinationNotWritable,
            $"{_node} failed while {doing} at offset {position}: {LinuxNative.Describe(errno)}. The device may be failing or was removed; what it holds is incomplete and must not be booted.",
            "Check the device (dmesg), reconnect it, and write the image again.");

    private void Guard(Action action, long position)
    {
        try
        {
            action();
        }
        catch (UnauthorizedAccessException)
        {
            throw DeviceSafety.PermissionDenied(_node);
        }
        catch (IOException ex)
        {
            throw new OrasStagingException(ErrorCode.DestinationNotWritable,
                $"{_node} failed at offset {position}: {ex.Message}. What it holds is incomplete and must not be booted.",
                "Check the device, reconnect it, and write the image again.", ex);
        }
    }
}
