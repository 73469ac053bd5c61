using System.Buffers.Binary;

namespace OrasStaging.DiskImages;

/// <summary>Signatures of the decoded bytes (disk-formats.md §6).</summary>
internal static class ImageFormatDetector
{
    /// <summary>Enough to see the ISO 9660 marker at 0x8001.</summary>
    public const int PeekLength = 0x8001 + 5;

    /// <summary>
    /// The disk format of the decoded bytes; UnsupportedFormat, naming what was found, when they are a payload that
    /// is no disk image (an archive, a web page, an executable): staging those as "raw" would hide the mistake.
    /// </summary>
    public static SourceFormat Detect(ReadOnlySpan<byte> head)
    {
        if (NotADisk(head) is { } what)
        {
            throw new OrasStagingException(ErrorCode.UnsupportedFormat,
                $"The decoded layer is {what}, not a disk image; nothing was written.",
                "Check the reference and the layer chosen (-LayerTitle, -LayerMediaType); a containerDisk needs its disk under disk/ in the layer.");
        }

        if (head.Length >= 4 && BinaryPrimitives.ReadUInt32BigEndian(head) == 0x514649FB)
        {
            return SourceFormat.Qcow2;
        }

        if (head.Length >= 4 && BinaryPrimitives.ReadUInt32BigEndian(head) == 0x4B444D56)
        {
            return SourceFormat.Vmdk;
        }

        if (StartsWith(head, "# Disk DescriptorFile"u8))
        {
            return SourceFormat.Vmdk;
        }

        if (StartsWith(head, "vhdxfile"u8))
        {
            return SourceFormat.Vhdx;
        }

        // A dynamic VHD carries a copy of its footer at offset 0; a fixed one only at the end.
        if (StartsWith(head, "conectix"u8))
        {
            return SourceFormat.VhdDynamic;
        }

        if (head.Length >= 0x44 && BinaryPrimitives.ReadUInt32LittleEndian(head[0x40..]) == 0xBEDA107F)
        {
            return SourceFormat.Vdi;
        }

        return SourceFormat.Raw;
    }

    /// <summary>True when the bytes open with a POSIX (ustar/pax) or GNU tar header: "ustar" at offset 257.</summary>
    public static bool IsTar(ReadOnlySpan<byte> head) =>
        head.Length >= 512 && head.Slice(257, 5).SequenceEqual("ustar"u8);

    /// <summary>What a payload that is not a disk image is ("a zip archive", "an HTML page"…), or null.</summary>
    public static string? NotADisk(ReadOnlySpan<byte> head)
    {
        if (IsTar(head))
        {
            return "a tar archive";
        }

        if (StartsWith(head, new byte[] { 0x50, 0x4B, 3, 4 }) || StartsWith(head, new byte[] { 0x50, 0x4B, 5, 6 }) || StartsWith(head, new byte[] { 0x50, 0x4B, 7, 8 }))
        {
            return "a zip archive";
        }

        if (StartsWith(head, new byte[] { 0x37, 0x7A, 0xBC, 0xAF, 0x27, 0x1C }))
        {
            return "a 7-Zip archive";
        }

        if (StartsWith(head, new byte[] { 0x52, 0x61, 0x72, 0x21, 0x1A, 0x07 }))
        {
            return "a RAR archive";
        }

        if (StartsWith(head, new byte[] { 0x7F, 0x45, 0x4C, 0x46 }))
        {
            return "an ELF executable";
        }

        if (StartsWith(head, "%PDF-"u8))
        {
            return "a PDF document";
        }

        // Still compressed after decoding: a layer compressed twice (or a .tar.gz inside a .zst).
        if (StartsWith(head, new byte[] { 0x1F, 0x8B }) || StartsWith(head, new byte[] { 0x28, 0xB5, 0x2F, 0xFD })
            || StartsWith(head, new byte[] { 0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00 }))
        {
            return "still compressed after decoding (compressed twice)";
        }

        // Text markup: a captive portal's or proxy's HTML page, an XML or JSON error body.
        ReadOnlySpan<byte> text = head;
        if (StartsWith(text, new byte[] { 0xEF, 0xBB, 0xBF }))
        {
            text = text[3..];
        }

        int skip = 0;
        while (skip < text.Length && skip < 1024 && text[skip] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')
        {
            skip++;
        }

        text = text[skip..];
        if (StartsWithIgnoreCase(text, "<!DOCTYPE html"u8) || StartsWithIgnoreCase(text, "<html"u8)
            || StartsWithIgnoreCase(text, "<head"u8) || StartsWithIgnoreCase(text, "<body"u8))
        {
            return "an HTML page (a proxy's or captive portal's answer?)";
        }

        if (StartsWithIgnoreCase(text, "<?xml"u8))
        {
            return "an XML document";
        }

        if (text.Length >= 2 && text[0] == (byte)'{' && (text[1] == (byte)'"' || text[1] is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t')
            && !head[..Math.Min(head.Length, 512)].Contains((byte)0))
        {
            return "a JSON document";
        }

        return null;
    }

    /// <summary>A word for messages and Verbose: which kind of raw it looks like.</summary>
    public static string DescribeRaw(ReadOnlySpan<byte> head)
    {
        if (head.Length >= 520 && head.Slice(512, 8).SequenceEqual("EFI PART"u8))
        {
            return "raw (GPT)";
        }

        if (head.Length >= 0x8001 + 5 && head.Slice(0x8001, 5).SequenceEqual("CD001"u8))
        {
            return "raw (ISO 9660)";
        }

        if (head.Length >= 512 && head[510] == 0x55 && head[511] == 0xAA)
        {
            return "raw (MBR)";
        }

        return "raw";
    }

    private static bool StartsWith(ReadOnlySpan<byte> head, ReadOnlySpan<byte> magic) =>
        head.Length >= magic.Length && head[..magic.Length].SequenceEqual(magic);

    private static bool StartsWithIgnoreCase(ReadOnlySpan<byte> head, ReadOnlySpan<byte> ascii)
    {
        if (head.Length < ascii.Length)
        {
            return false;
        }

        for (int i = 0; i < ascii.Length; i++)
        {
            if (char.ToLowerInvariant((char)head[i]) != char.ToLowerInvariant((char)ascii[i]))
            {
                return false;
            }
        }

        return true;
    }
}
