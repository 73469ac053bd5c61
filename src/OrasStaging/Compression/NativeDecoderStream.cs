using System.Runtime.InteropServices;

namespace OrasStaging.Compression;

/// <summary>
/// What the native decoders (ISA-L, libzstd) share: pinned input and output buffers whose addresses the native
/// code holds, and the read side over one abstract step that fills the output buffer from its start. CopyTo hands
/// each decoded megabyte straight to the destination, without a copy into the caller's buffer.
/// </summary>
internal abstract class NativeDecoderStream : ForwardReadStream
{
    protected const int BufferSize = 1 << 20;

    private readonly byte[] _out = GC.AllocateArray<byte>(BufferSize, pinned: true);
    private int _outPos, _outAvail;

    protected NativeDecoderStream()
    {
        In = GC.AllocateArray<byte>(BufferSize, pinned: true);
        InPtr = Marshal.UnsafeAddrOfPinnedArrayElement(In, 0);
        OutPtr = Marshal.UnsafeAddrOfPinnedArrayElement(_out, 0);
    }

    protected byte[] In { get; }

    protected IntPtr InPtr { get; }

    protected IntPtr OutPtr { get; }

    /// <summary>Decodes into the output buffer from its start; returns the bytes produced, 0 only at the valid end.</summary>
    protected abstract int Decode();

    public sealed override int Read(Span<byte> buffer)
    {
        if (buffer.IsEmpty)
        {
            return 0;
        }

        if (_outAvail == 0)
        {
            _outPos = 0;
            _outAvail = Decode();
        }

        int n = Math.Min(buffer.Length, _outAvail);
        _out.AsSpan(_outPos, n).CopyTo(buffer);
        _outPos += n;
        _outAvail -= n;
        return n;
    }

    public sealed override void CopyTo(Stream destination, int bufferSize)
    {
        if (_outAvail > 0)
        {
            destination.Write(_out, _outPos, _outAvail);
            _outAvail = 0;
        }

        int n;
        while ((n = Decode()) > 0)
        {
            destination.Write(_out, 0, n);
        }
    }

    /// <summary>The first of <paramref name="candidates"/> the loader finds (names differ per platform and package).</summary>
    internal static bool TryLoadFirst(IEnumerable<string> candidates, out IntPtr handle, out string name)
    {
        foreach (string candidate in candidates)
        {
            if (NativeLibrary.TryLoad(candidate, out handle))
            {
                name = candidate;
                return true;
            }
        }

        handle = IntPtr.Zero;
        name = string.Empty;
        return false;
    }
}
