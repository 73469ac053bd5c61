using System.Runtime.InteropServices;

namespace OrasStaging.Compression;

/// <summary>
/// gzip through ISA-L's isal_inflate, about 1.5x the runtime's zlib-ng on one core. ISA-L parses each member's
/// header and checks its CRC32 and ISIZE; this class walks the members (a new one starts wherever the previous
/// ends with 1F 8B), ignores trailing bytes that do not start a member (as GZipStream does), and reports a stream
/// that ends inside a member as truncated. The state and both buffers live on the pinned heap, so the pointers
/// ISA-L holds stay valid and nothing native needs freeing.
/// </summary>
internal sealed class IsalGzipStream : NativeDecoderStream
{
    private readonly Stream _compressed;
    private readonly IsalInflate _api;
    private readonly byte[] _state = GC.AllocateArray<byte>(IsalInflate.StateSize, pinned: true);
    private readonly IntPtr _statePtr;
    private int _inPos, _inAvail;
    private bool _eof, _memberFinished, _done;

    public IsalGzipStream(Stream compressed, IsalInflate api)
    {
        _compressed = compressed;
        _api = api;
        _statePtr = Marshal.UnsafeAddrOfPinnedArrayElement(_state, 0);
        _api.Init(_statePtr);
        Marshal.WriteInt32(_statePtr, IsalInflate.CrcFlag, IsalInflate.GzipWrapper);
    }

    /// <summary>Fills the output buffer from its start; 0 only at the valid end of the stream.</summary>
    protected override int Decode()
    {
        int idle = 0;
        while (!_done)
        {
            if (_memberFinished && !StartNextMember())
            {
                _done = true;
                break;
            }

            if (_inAvail == 0 && !_eof)
            {
                Refill();
            }

            Marshal.WriteIntPtr(_statePtr, IsalInflate.NextOut, OutPtr);
            Marshal.WriteInt32(_statePtr, IsalInflate.AvailOut, BufferSize);
            Marshal.WriteIntPtr(_statePtr, IsalInflate.NextIn, InPtr + _inPos);
            Marshal.WriteInt32(_statePtr, IsalInflate.AvailIn, _inAvail);
            int rc = _api.Inflate(_statePtr);
            int left = Marshal.ReadInt32(_statePtr, IsalInflate.AvailIn);
            int consumed = _inAvail - left;
            _inPos += consumed;
            _inAvail = left;
            int produced = BufferSize - Marshal.ReadInt32(_statePtr, IsalInflate.AvailOut);
            if (rc < 0)
            {
                throw new InvalidDataException($"The gzip stream is corrupt: {Describe(rc)} (ISA-L).");
            }

            if (Marshal.ReadInt32(_statePtr, IsalInflate.BlockState) == IsalInflate.BlockFinish)
            {
                _memberFinished = true;
            }

            if (produced > 0)
            {
                return produced;
            }

            if (!_memberFinished && _inAvail == 0 && _eof)
            {
                throw new InvalidDataException("The gzip stream ends before its last member is complete (truncated).");
            }

            // ISA-L buffers partial headers itself, so a call that neither consumes nor produces means it is stuck.
            idle = consumed == 0 && !_memberFinished ? idle + 1 : 0;
            if (idle > 2)
            {
                throw new InvalidDataException("The gzip stream is corrupt: the decoder makes no progress (ISA-L).");
            }
        }

        return 0;
    }

    /// <summary>After a member: another starts only with the gzip magic; anything else is trailing bytes, ignored.</summary>
    private bool StartNextMember()
    {
        while (_inAvail < 2 && !_eof)
        {
            Refill();
        }

        if (_inAvail == 0 || In[_inPos] != 0x1F || (_inAvail > 1 && In[_inPos + 1] != 0x8B))
        {
            return false;
        }

        _api.Reset(_statePtr);
        Marshal.WriteInt32(_statePtr, IsalInflate.CrcFlag, IsalInflate.GzipWrapper);
        _memberFinished = false;
        return true;
    }

    /// <summary>Keeps unread input at the front of the buffer and reads more behind it.</summary>
    private void Refill()
    {
        if (_inPos > 0)
        {
            Buffer.BlockCopy(In, _inPos, In, 0, _inAvail);
            _inPos = 0;
        }

        int n = _compressed.Read(In, _inAvail, BufferSize - _inAvail);
        if (n == 0)
        {
            _eof = true;
        }

        _inAvail += n;
    }

    private static string Describe(int rc) => rc switch
    {
        -1 => "invalid deflate block",
        -2 => "invalid deflate symbol",
        -3 => "invalid look-back distance",
        -4 => "invalid gzip header",
        -5 => "unsupported compression method",
        -6 => "CRC32 or length mismatch in the member trailer",
        _ => $"error {rc}",
    };

    protected override void Dispose(bool disposing)
    {
        _done = true;
        base.Dispose(disposing);
    }
}
