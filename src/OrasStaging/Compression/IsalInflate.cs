using System.Runtime.InteropServices;

namespace OrasStaging.Compression;

/// <summary>
/// ISA-L's inflate (libisal, Debian package libisal2), loaded at run time. Its streaming state is a plain C struct of
/// about 85 KiB whose layout is not versioned, so we touch only the few fields we need, at the offsets of
/// ISA-L 2.2x-2.31 (igzip_lib.h), allocate it natively with room to spare, and prove the layout with a self-test
/// decode before trusting it: a library whose layout differs fails the self-test and we fall back.
/// </summary>
internal sealed class IsalInflate
{
    // struct inflate_state (igzip_lib.h): the fields before the Huffman tables are fixed since 2.0; block_state and
    // crc_flag follow inflate_huff_code_large/small, whose sizes the self-test checks.
    public const int NextOut = 0, AvailOut = 8, TotalOut = 12, NextIn = 16, AvailIn = 32;
    public const int BlockState = 21160, CrcFlag = 21172;
    public const int StateSize = 87368 * 2;

    public const int GzipWrapper = 1;    // ISAL_GZIP: parse the header, check CRC32 and ISIZE in the trailer.
    public const int BlockFinish = 5;    // ISAL_BLOCK_FINISH: the member, trailer included, is done.

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate void StateAction(IntPtr state);

    [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
    public delegate int StateFunction(IntPtr state);

    private static readonly string[] Candidates = { "libisal.so.2", "libisal.so", "libisal.2.dylib", "libisal.dylib", "isal.dll" };

    private IsalInflate(string library, StateAction init, StateAction reset, StateFunction inflate)
    {
        Library = library;
        Init = init;
        Reset = reset;
        Inflate = inflate;
    }

    public string Library { get; }

    public StateAction Init { get; }

    public StateAction Reset { get; }

    public StateFunction Inflate { get; }

    /// <summary>Loads libisal and proves the struct layout on a known two-member stream; the failure says why.</summary>
    public static IsalInflate? TryLoad(out string failure)
    {
        if (!NativeDecoderStream.TryLoadFirst(Candidates, out IntPtr handle, out string name))
        {
            failure = "libisal is not installed (Debian/Ubuntu: apt-get install libisal2)";
            return null;
        }

        if (!NativeLibrary.TryGetExport(handle, "isal_inflate_init", out IntPtr init)
            || !NativeLibrary.TryGetExport(handle, "isal_inflate_reset", out IntPtr reset)
            || !NativeLibrary.TryGetExport(handle, "isal_inflate", out IntPtr inflate))
        {
            failure = $"{name} lacks the isal_inflate streaming API";
            return null;
        }

        var api = new IsalInflate(name,
            Marshal.GetDelegateForFunctionPointer<StateAction>(init),
            Marshal.GetDelegateForFunctionPointer<StateAction>(reset),
            Marshal.GetDelegateForFunctionPointer<StateFunction>(inflate));
        try
        {
            if (!SelfTest(api))
            {
                failure = $"{name} has an inflate_state layout this build does not know";
                return null;
            }
        }
        catch (Exception ex) when (ex is InvalidDataException or IOException)
        {
            failure = $"{name} failed its self-test: {ex.Message}";
            return null;
        }

        failure = "";
        return api;
    }

    /// <summary>Two members ("ab", then "c"): wrong offsets would lose the member boundary or the CRC check.</summary>
    private static bool SelfTest(IsalInflate api)
    {
        byte[] twoMembers =
        {
            0x1F, 0x8B, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x4B, 0x4C, 0x02, 0x00, 0x6D, 0x48, 0x83, 0x9E, 0x02, 0x00, 0x00, 0x00,
            0x1F, 0x8B, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x4B, 0x06, 0x00, 0x6F, 0xDF, 0xB9, 0x06, 0x01, 0x00, 0x00, 0x00,
        };
        using var decoder = new IsalGzipStream(new MemoryStream(twoMembers), api);
        var output = new MemoryStream();
        decoder.CopyTo(output);
        if (!output.ToArray().AsSpan().SequenceEqual("abc"u8))
        {
            return false;
        }

        byte[] badCrc = (byte[])twoMembers.Clone();
        badCrc[14] ^= 0xFF;
        try
        {
            using var check = new IsalGzipStream(new MemoryStream(badCrc), api);
            check.CopyTo(Stream.Null);
            return false;
        }
        catch (InvalidDataException)
        {
            return true;
        }
    }
}
