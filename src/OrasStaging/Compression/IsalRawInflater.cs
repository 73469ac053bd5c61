using System.Runtime.InteropServices;

namespace OrasStaging.Compression;

/// <summary>
/// One raw-deflate block stream (no gzip or zlib wrapper) inflated by ISA-L into a fixed output, with one inflate
/// state reused for every call: what a compressed qcow2 cluster needs. A DeflateStream per cluster costs an inflate
/// init, a window and a wrapper stream each time; ISA-L's reset only clears a few fields. Decoding stops when the
/// output is full or the final block ends, whichever comes first; the caller decides whether a short output is an
/// error. Not thread-safe: one per worker.
/// </summary>
internal sealed class IsalRawInflater
{
    private const int RawDeflate = 0; // ISAL_DEFLATE: no header, no trailer, no check.

    private readonly IsalInflate _api;
    private readonly byte[] _state = GC.AllocateArray<byte>(IsalInflate.StateSize, pinned: true);
    private readonly IntPtr _statePtr;

    public IsalRawInflater(IsalInflate api)
    {
        _api = api;
        _statePtr = Marshal.UnsafeAddrOfPinnedArrayElement(_state, 0);
        _api.Init(_statePtr);
    }

    /// <summary>Inflates source[0..length) into output[offset..offset+count); the bytes produced.</summary>
    /// <exception cref="InvalidDataException">The deflate data is invalid.</exception>
    public int Inflate(byte[] source, int length, byte[] output, int offset, int count)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan((uint)length, (uint)source.Length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan((long)(uint)offset + (uint)count, output.Length);
        var inHandle = GCHandle.Alloc(source, GCHandleType.Pinned);
        var outHandle = GCHandle.Alloc(output, GCHandleType.Pinned);
        try
        {
            _api.Reset(_statePtr);
            Marshal.WriteInt32(_statePtr, IsalInflate.CrcFlag, RawDeflate);
            Marshal.WriteIntPtr(_statePtr, IsalInflate.NextIn, inHandle.AddrOfPinnedObject());
            Marshal.WriteInt32(_statePtr, IsalInflate.AvailIn, length);
            int produced = 0;
            for (int idle = 0; produced < count && idle < 3;)
            {
                Marshal.WriteIntPtr(_statePtr, IsalInflate.NextOut, outHandle.AddrOfPinnedObject() + offset + produced);
                Marshal.WriteInt32(_statePtr, IsalInflate.AvailOut, count - produced);
                int availIn = Marshal.ReadInt32(_statePtr, IsalInflate.AvailIn);
                int rc = _api.Inflate(_statePtr);
                if (rc < 0)
                {
                    throw new InvalidDataException($"invalid deflate data (ISA-L error {rc})");
                }

                int made = count - produced - Marshal.ReadInt32(_statePtr, IsalInflate.AvailOut);
                produced += made;
                if (Marshal.ReadInt32(_statePtr, IsalInflate.BlockState) == IsalInflate.BlockFinish)
                {
                    break;
                }

                // Input used up, or neither consumed nor produced: nothing more will come.
                bool consumed = Marshal.ReadInt32(_statePtr, IsalInflate.AvailIn) != availIn;
                idle = made == 0 && !consumed ? idle + 1 : 0;
                if (Marshal.ReadInt32(_statePtr, IsalInflate.AvailIn) == 0 && made == 0)
                {
                    break;
                }
            }

            return produced;
        }
        finally
        {
            inHandle.Free();
            outHandle.Free();
        }
    }
}
