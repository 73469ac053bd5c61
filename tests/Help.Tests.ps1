#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# The idea of PSScriptAnalyzer's Tests/Engine/ModuleHelp.Tests.ps1: help that is missing, auto-generated or
# disagrees with the code fails the build. Driven by what the module exports, so a cmdlet that lands without docs
# fails here at once. The second half proves tools/New-MamlHelp.ps1 itself on a small probe module.

BeforeDiscovery {
    $manifest = Import-PowerShellDataFile $env:ORASSTAGING_MODULE
    $script:CmdletCases = @($manifest.CmdletsToExport | ForEach-Object { @{ Name = $_ } })
    # An empty -ForEach generates no test in Pester 5 and would pass silently: a failed discovery fails the run.
    if ($CmdletCases.Count -eq 0) { throw "The built manifest ($env:ORASSTAGING_MODULE) exports no cmdlet." }
    $script:CmdletCount = $CmdletCases.Count
}

BeforeAll {
    $script:ModulePath = $env:ORASSTAGING_MODULE
    $script:ModuleBase = Split-Path $ModulePath
    $script:RepoRoot = Split-Path $PSScriptRoot
    $script:DocsPath = Join-Path $RepoRoot 'docs/en-US'
    $script:HelpTool = Join-Path $RepoRoot 'tools/New-MamlHelp.ps1'
    $script:Common = [System.Management.Automation.Cmdlet]::CommonParameters
    Import-Module $ModulePath -Force

    function Get-TypeDisplayName([type] $Type) {
        $inner = [Nullable]::GetUnderlyingType($Type)
        if ($inner) { return Get-TypeDisplayName $inner }
        if ($Type.IsArray) { return (Get-TypeDisplayName $Type.GetElementType()) + '[]' }
        if ($Type.IsGenericType) {
            return "$($Type.Name.Substring(0, $Type.Name.IndexOf('`')))[$(($Type.GetGenericArguments() | ForEach-Object { Get-TypeDisplayName $_ }) -join ', ')]"
        }
        $Type.Name
    }

    function Get-PipelineText($Parameter) {
        $kinds = @()
        if ($Parameter.ValueFromPipeline) { $kinds += 'ByValue' }
        if ($Parameter.ValueFromPipelineByPropertyName) { $kinds += 'ByPropertyName' }
        if ($kinds) { "True ($($kinds -join ', '))" } else { 'False' }
    }

    function Get-Text($Node) {
        # Help nodes are PSObjects with a Text property, or arrays of them.
        (@($Node) | ForEach-Object { if ($_ -is [string]) { $_ } else { $_.Text } }) -join "`n"
    }

    function Invoke-HelpTool([string[]] $Arguments) {
        # A child pwsh, as build.ps1 runs it: the tool imports the module it documents.
        $pwsh = [Environment]::ProcessPath
        $prefix = @()
        if ((Split-Path $pwsh -Leaf) -like 'dotnet*') { $prefix += [Environment]::GetCommandLineArgs()[0] }
        $out = & $pwsh @prefix -NoProfile -NonInteractive -File $HelpTool @Arguments 2>&1
        [pscustomobject]@{ ExitCode = $LASTEXITCODE; Output = ($out | ForEach-Object { "$_" }) -join "`n" }
    }
}

AfterAll {
    Remove-Module OrasStaging -ErrorAction Ignore
}

Describe 'Help cases' {
    It 'come from the built manifest and are not empty' -ForEach @(@{ Count = $CmdletCount }) {
        $Count | Should -BeGreaterThan 0
    }
}

Describe 'Help for <Name>' -ForEach $CmdletCases {
    BeforeAll {
        $script:Command = Get-Command $Name -Module OrasStaging
        $script:Help = Get-Help $Name -Full
        $script:HelpParameters = @($Help.parameters.parameter)
        $script:CodeParameters = @($Command.Parameters.Values | Where-Object { $_.Name -notin $Common })
    }

    It 'has markdown in docs/en-US' {
        Join-Path $DocsPath "$Name.md" | Should -Exist
    }

    It 'is not auto-generated and has a synopsis' {
        $Help.Synopsis | Should -Not -BeNullOrEmpty
        # Auto-generated help repeats the syntax as the synopsis.
        $Help.Synopsis | Should -Not -BeLike '*`[`<CommonParameters`>`]*'
        $Help.Synopsis | Should -Not -BeLike "$Name *"
    }

    It 'has a description' {
        Get-Text $Help.description | Should -Not -BeNullOrEmpty
    }

    It 'has at least two examples, each with code and remarks' {
        $examples = @($Help.examples.example)
        $examples.Count | Should -BeGreaterOrEqual 2
        foreach ($example in $examples) {
            $example.code | Should -Not -BeNullOrEmpty
            Get-Text $example.remarks | Should -Not -BeNullOrEmpty
        }
    }

    It 'has an example against the ghcr.io nosi images and a pipeline example' {
        $codes = @($Help.examples.example | ForEach-Object code)
        @($codes | Where-Object { $_ -match 'ghcr\.io/safl/nosi/' }) | Should -Not -BeNullOrEmpty
        $pipeline = [regex]::Escape($Name)
        @($codes | Where-Object { $_ -match "\|\s*$pipeline\b" -or $_ -match "$pipeline\b[^\n]*\|" }) | Should -Not -BeNullOrEmpty
    }

    It 'describes every parameter with the type, mandatory, position, pipeline input, aliases and wildcards of the code' {
        foreach ($parameter in $CodeParameters) {
            $entry = $HelpParameters | Where-Object name -EQ $parameter.Name
            $entry | Should -Not -BeNullOrEmpty -Because "-$($parameter.Name) must be documented"
            Get-Text $entry.description | Should -Not -BeNullOrEmpty -Because "-$($parameter.Name) needs a description"
            $entry.type.name | Should -Be (Get-TypeDisplayName $parameter.ParameterType) -Because "-$($parameter.Name) type"
            $aliases = if ($parameter.Aliases.Count) { $parameter.Aliases -join ', ' } else { 'none' }
            $entry.aliases | Should -Be $aliases -Because "-$($parameter.Name) aliases"
            $wildcards = [bool]($parameter.Attributes | Where-Object { $_ -is [System.Management.Automation.SupportsWildcardsAttribute] })
            $entry.globbing | Should -Be $wildcards.ToString().ToLowerInvariant() -Because "-$($parameter.Name) wildcards"
            $sets = @($parameter.ParameterSets.Values)
            $mandatory = [bool]($sets | Where-Object IsMandatory)
            $entry.required | Should -Be $mandatory.ToString().ToLowerInvariant() -Because "-$($parameter.Name) mandatory"
        }
    }

    It 'documents no parameter the cmdlet lacks' {
        $names = @($CodeParameters.Name)
        foreach ($entry in $HelpParameters) {
            $entry.name | Should -BeIn $names -Because 'help must not describe a parameter the cmdlet does not have'
        }
    }

    It 'has one syntax entry per parameter set, with the positions, mandatory and pipeline input of the code' {
        $items = @($Help.syntax.syntaxItem)
        $sets = @($Command.ParameterSets)
        $items.Count | Should -Be $sets.Count
        for ($i = 0; $i -lt $sets.Count; $i++) {
            $code = @($sets[$i].Parameters | Where-Object Name -NotIn $Common)
            $help = @($items[$i].parameter)
            @($help.name | Sort-Object) | Should -Be @($code.Name | Sort-Object) -Because "parameter set $($sets[$i].Name)"
            foreach ($p in $code) {
                $h = $help | Where-Object name -EQ $p.Name
                $h.required | Should -Be $p.IsMandatory.ToString().ToLowerInvariant() -Because "-$($p.Name) in set $($sets[$i].Name)"
                $position = if ($p.Position -eq [int]::MinValue) { 'named' } else { "$($p.Position)" }
                $h.position | Should -Be $position -Because "-$($p.Name) position in set $($sets[$i].Name)"
                $h.pipelineInput | Should -Be (Get-PipelineText $p) -Because "-$($p.Name) pipeline input in set $($sets[$i].Name)"
            }
        }
    }

    It 'lists the [OutputType] types as outputs and the by-value pipeline types as inputs' {
        $outputs = @($Help.returnValues.returnValue | ForEach-Object { $_.type.name })
        foreach ($type in $Command.OutputType) { $type.Name | Should -BeIn $outputs }
        $inputs = @($Help.inputTypes.inputType | ForEach-Object { $_.type.name })
        foreach ($parameter in $CodeParameters | Where-Object { $_.ParameterSets.Values | Where-Object ValueFromPipeline }) {
            $names = @($parameter.ParameterType.FullName) + @(if ($parameter.ParameterType.IsArray) { $parameter.ParameterType.GetElementType().FullName })
            @($names | Where-Object { $_ -in $inputs }) | Should -Not -BeNullOrEmpty -Because "-$($parameter.Name) binds from the pipeline by value"
        }
    }

    It 'has HelpUri pointing at the README section, first among the related links' {
        $Command.HelpUri | Should -Be "https://github.com/safl/OrasStaging#$($Name.ToLowerInvariant())"
        @($Help.relatedLinks.navigationLink)[0].uri | Should -Be $Command.HelpUri
    }

    It 'has a README section for the HelpUri anchor' {
        # GitHub's anchor for a heading: lower case, punctuation other than - and _ dropped, spaces as -.
        $anchors = Get-Content (Join-Path $RepoRoot 'README.md') | Where-Object { $_ -match '^#{1,6} ' } |
            ForEach-Object { (($_ -replace '^#+\s+', '').Trim().ToLowerInvariant() -replace '[^\w\- ]', '') -replace ' ', '-' }
        ([uri]$Command.HelpUri).Fragment.TrimStart('#') | Should -BeIn $anchors
    }

    It 'renders with -Full, -Examples and -Parameter' {
        $full = Get-Help $Name -Full | Out-String
        $full | Should -Match 'SYNTAX'
        $full | Should -Match 'PARAMETERS'
        (Get-Help $Name -Examples | Out-String) | Should -Match 'Example 2'
        foreach ($parameter in $CodeParameters) {
            (Get-Help $Name -Parameter $parameter.Name | Out-String) | Should -Match ([regex]::Escape("-$($parameter.Name)"))
        }
    }
}

Describe 'Help files of the module' {
    It 'ships en-US/OrasStaging.dll-Help.xml with one entry per exported cmdlet' {
        $file = Join-Path $ModuleBase 'en-US/OrasStaging.dll-Help.xml'
        $file | Should -Exist
        $xml = [xml](Get-Content $file -Raw)
        $names = @($xml.helpItems.ChildNodes | Where-Object LocalName -EQ 'command' | ForEach-Object { $_.details.name })
        @($names | Sort-Object) | Should -Be @((Get-Command -Module OrasStaging).Name | Sort-Object)
    }

    It 'has markdown only for cmdlets that the module exports' {
        $exported = @((Get-Command -Module OrasStaging).Name)
        foreach ($file in Get-ChildItem $DocsPath -Filter '*-*.md') {
            $file.BaseName | Should -BeIn $exported -Because "$($file.Name) documents a cmdlet that must exist"
        }
    }

    It 'ships about_OrasStaging, found by Get-Help' {
        Join-Path $ModuleBase 'en-US/about_OrasStaging.help.txt' | Should -Exist
        $about = Get-Help about_OrasStaging | Out-String
        $about | Should -Match 'about_OrasStaging'
        $about | Should -Match 'SHORT DESCRIPTION'
    }

    It 'explains every error id in about_OrasStaging' {
        $text = Get-Content (Join-Path $ModuleBase 'en-US/about_OrasStaging.help.txt') -Raw
        foreach ($code in [Enum]::GetNames([OrasStaging.ErrorCode])) {
            $text | Should -Match "\b$code\b" -Because "error id $code needs a troubleshooting entry"
        }
    }

    It 'names every exported cmdlet in about_OrasStaging, in lines that fit an 80-column console' {
        $lines = Get-Content (Join-Path $ModuleBase 'en-US/about_OrasStaging.help.txt')
        foreach ($name in (Get-Command -Module OrasStaging).Name) {
            ($lines -join "`n") | Should -Match "\b$([regex]::Escape($name))\b"
        }
        @($lines | Where-Object { $_.Length -gt 80 }) | Should -BeNullOrEmpty
    }

    It 'covers the flow, the stamp and receipt, credentials and WITHCACHE_SERVER in about_OrasStaging' {
        $text = Get-Content (Join-Path $ModuleBase 'en-US/about_OrasStaging.help.txt') -Raw
        foreach ($needle in '.digest', '.oras.json', 'WITHCACHE_SERVER', '-Credential', 'config.json', 'credHelpers', 'credsStore', 'anonymous') {
            $text | Should -Match ([regex]::Escape($needle))
        }
    }
}

Describe 'tools/New-MamlHelp.ps1 on a probe module' {
    BeforeAll {
        $script:Probe = Join-Path $TestDrive 'Probe'
        $null = New-Item -ItemType Directory -Force $Probe
        $source = @'
using System.Management.Automation;
namespace Probe.Commands {
    public enum ProbeFormat { Qcow2, Raw }
    [Cmdlet(VerbsData.Save, "ProbeItem", SupportsShouldProcess = true, DefaultParameterSetName = "Path", HelpUri = "https://example.invalid/save-probeitem")]
    [OutputType(typeof(System.IO.FileInfo))]
    public sealed class SaveProbeItemCommand : PSCmdlet {
        [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = "Path")]
        [SupportsWildcards]
        public string[] Path { get; set; }
        [Parameter(Mandatory = true, ValueFromPipelineByPropertyName = true, ParameterSetName = "LiteralPath")]
        [Alias("PSPath", "LP")]
        public string[] LiteralPath { get; set; }
        [Parameter(Position = 1)] [Alias("Destination")]
        public string DestinationPath { get; set; }
        [Parameter] public ProbeFormat Format { get; set; } = ProbeFormat.Raw;
        [Parameter] public int MaximumRetryCount { get; set; } = 5;
        [Parameter] public SwitchParameter Force { get; set; }
        protected override void ProcessRecord() { WriteObject(Format); }
    }
}
'@
        Add-Type -TypeDefinition $source -OutputAssembly (Join-Path $Probe 'Probe.dll') -OutputType Library
        New-ModuleManifest (Join-Path $Probe 'Probe.psd1') -RootModule 'Probe.dll' -ModuleVersion '1.0.0' -CmdletsToExport 'Save-ProbeItem'
        $script:ProbeManifest = Join-Path $Probe 'Probe.psd1'

        $script:GoodMarkdown = @'
---
external help file: Probe.dll-Help.xml
Module Name: Probe
online version: https://example.invalid/save-probeitem
schema: 2.0.0
---

# Save-ProbeItem

## SYNOPSIS
Saves a probe item.

## SYNTAX

### Path (Default)
```
Save-ProbeItem [-Path] <String[]> [[-DestinationPath] <String>] [-Force] [-Format <ProbeFormat>] [-MaximumRetryCount <Int32>] [-Confirm] [-WhatIf] [<CommonParameters>]
```

### LiteralPath
```
Save-ProbeItem [[-DestinationPath] <String>] -LiteralPath <String[]> [-Force] [-Format <ProbeFormat>] [-MaximumRetryCount <Int32>] [-Confirm] [-WhatIf] [<CommonParameters>]
```

## DESCRIPTION
The Save-ProbeItem cmdlet saves
a probe item.

## EXAMPLES

### Example 1: One item
```powershell
Save-ProbeItem -Path ./a.img
```

Saves one item.

### Example 2: From the pipeline
```powershell
Get-ChildItem *.img | Save-ProbeItem -Force
```

Saves every image in the folder.

## PARAMETERS

### -Confirm
Prompts you for confirmation before running the cmdlet.

```yaml
Type: SwitchParameter
Parameter Sets: (All)
Aliases: cf

Required: False
Position: Named
Default value: False
Accept pipeline input: False
Accept wildcard characters: False
```

### -DestinationPath
Where to save. The default is the current location.

```yaml
Type: String
Parameter Sets: (All)
Aliases: Destination

Required: False
Position: 1
Default value: Current location
Accept pipeline input: False
Accept wildcard characters: False
```

### -Force
Overwrites.

```yaml
Type: SwitchParameter
Parameter Sets: (All)
Aliases:

Required: False
Position: Named
Default value: False
Accept pipeline input: False
Accept wildcard characters: False
```

### -Format
The format.

```yaml
Type: ProbeFormat
Parameter Sets: (All)
Aliases:

Required: False
Position: Named
Default value: Raw
Accept pipeline input: False
Accept wildcard characters: False
```

### -LiteralPath
Paths taken literally.

```yaml
Type: String[]
Parameter Sets: LiteralPath
Aliases: PSPath, LP

Required: True
Position: Named
Default value: None
Accept pipeline input: True (ByPropertyName)
Accept wildcard characters: False
```

### -MaximumRetryCount
How often to retry.

```yaml
Type: Int32
Parameter Sets: (All)
Aliases:

Required: False
Position: Named
Default value: 5
Accept pipeline input: False
Accept wildcard characters: False
```

### -Path
Paths with wildcards.

```yaml
Type: String[]
Parameter Sets: Path
Aliases:

Required: True
Position: 0
Default value: None
Accept pipeline input: True (ByValue, ByPropertyName)
Accept wildcard characters: True
```

### -WhatIf
Shows what would happen if the cmdlet runs. The cmdlet is not run.

```yaml
Type: SwitchParameter
Parameter Sets: (All)
Aliases: wi

Required: False
Position: Named
Default value: False
Accept pipeline input: False
Accept wildcard characters: False
```

### CommonParameters
This cmdlet supports the common parameters.

## INPUTS

### System.String[]
Paths.

## OUTPUTS

### System.IO.FileInfo
The saved file.

## NOTES
A note.

## RELATED LINKS

[Expand-Archive](https://learn.microsoft.com/powershell/module/microsoft.powershell.archive/expand-archive)
'@
        function New-ProbeDocs([string] $Markdown) {
            $docs = Join-Path $TestDrive ([guid]::NewGuid().ToString('n'))
            $null = New-Item -ItemType Directory $docs
            if ($Markdown) { [IO.File]::WriteAllText((Join-Path $docs 'Save-ProbeItem.md'), $Markdown) }
            $docs
        }
        $script:ProbeHelp = Join-Path $Probe 'en-US/Probe.dll-Help.xml'
    }

    AfterAll {
        Remove-Module Probe -ErrorAction Ignore
    }

    It 'writes MAML that Get-Help renders with -Full, -Examples and -Parameter' {
        $run = Invoke-HelpTool @('-ModulePath', $ProbeManifest, '-MarkdownPath', (New-ProbeDocs $GoodMarkdown), '-OutputPath', $ProbeHelp)
        $run.ExitCode | Should -Be 0 -Because $run.Output
        Import-Module $ProbeManifest -Force
        $help = Get-Help Save-ProbeItem -Full
        $help.Synopsis | Should -Be 'Saves a probe item.'
        Get-Text $help.description | Should -Be 'The Save-ProbeItem cmdlet saves a probe item.'
        @($help.syntax.syntaxItem).Count | Should -Be 2
        @($help.examples.example).Count | Should -Be 2
        @($help.examples.example)[1].code | Should -Be 'Get-ChildItem *.img | Save-ProbeItem -Force'
        $literal = Get-Help Save-ProbeItem -Parameter LiteralPath
        $literal.aliases | Should -Be 'PSPath, LP'
        $literal.pipelineInput | Should -Be 'True (ByPropertyName)'
        (Get-Help Save-ProbeItem -Parameter Path).globbing | Should -Be 'true'
        (Get-Help Save-ProbeItem -Parameter Path).position | Should -Be '0'
        (Get-Help Save-ProbeItem -Parameter MaximumRetryCount).defaultValue | Should -Be '5'
        (Get-Help Save-ProbeItem -Parameter DestinationPath).defaultValue | Should -Be 'Current location'
        @($help.relatedLinks.navigationLink)[0].uri | Should -Be 'https://example.invalid/save-probeitem'
        (Get-Help Save-ProbeItem -Examples | Out-String) | Should -Match 'Example 2: From the pipeline'
        (Get-Help Save-ProbeItem -Full | Out-String) | Should -Match '\[-Force\]'
        Remove-Module Probe
    }

    It 'fails when an exported cmdlet has no markdown' {
        $run = Invoke-HelpTool @('-ModulePath', $ProbeManifest, '-MarkdownPath', (New-ProbeDocs ''), '-OutputPath', (Join-Path $TestDrive 'x/en-US/Probe.dll-Help.xml'))
        $run.ExitCode | Should -Be 1
        $run.Output | Should -Match 'Save-ProbeItem: no help markdown'
        Join-Path $TestDrive 'x/en-US/Probe.dll-Help.xml' | Should -Not -Exist
    }

    It 'fails when a parameter is not documented' {
        $markdown = $GoodMarkdown -replace '(?s)### -MaximumRetryCount.*?```yaml.*?```', ''
        $run = Invoke-HelpTool @('-ModulePath', $ProbeManifest, '-MarkdownPath', (New-ProbeDocs $markdown), '-OutputPath', (Join-Path $TestDrive 'y/en-US/Probe.dll-Help.xml'))
        $run.ExitCode | Should -Be 1
        $run.Output | Should -Match 'parameter -MaximumRetryCount is not documented'
    }

    It 'fails when the markdown documents a parameter the cmdlet lacks' {
        $markdown = $GoodMarkdown -replace '### CommonParameters', "### -Colour`nNo such thing.`n`n### CommonParameters"
        $run = Invoke-HelpTool @('-ModulePath', $ProbeManifest, '-MarkdownPath', (New-ProbeDocs $markdown), '-OutputPath', (Join-Path $TestDrive 'z/en-US/Probe.dll-Help.xml'))
        $run.ExitCode | Should -Be 1
        $run.Output | Should -Match 'documents parameter -Colour, which the cmdlet does not have'
    }

    It 'fails when the yaml or the syntax disagrees with the code' {
        $markdown = $GoodMarkdown -replace '(?s)(### -DestinationPath.*?Position: )1', '${1}2' -replace '(?s)(### -Format.*?Default value: )Raw', '${1}Qcow2'
        $run = Invoke-HelpTool @('-ModulePath', $ProbeManifest, '-MarkdownPath', (New-ProbeDocs $markdown), '-OutputPath', (Join-Path $TestDrive 'w/en-US/Probe.dll-Help.xml'))
        $run.ExitCode | Should -Be 1
        $run.Output | Should -Match "-DestinationPath: yaml 'Position' says '2', the code says '1'"
        $run.Output | Should -Match "-Format: yaml 'Default value' says 'Qcow2', the code says 'Raw'"

        $markdown = $GoodMarkdown -replace '\[-Force\] \[-Format', '[-Format'
        $run = Invoke-HelpTool @('-ModulePath', $ProbeManifest, '-MarkdownPath', (New-ProbeDocs $markdown), '-OutputPath', (Join-Path $TestDrive 'v/en-US/Probe.dll-Help.xml'))
        $run.ExitCode | Should -Be 1
        $run.Output | Should -Match 'SYNTAX section disagrees with the code'
    }

    It 'fails with fewer than two examples or an empty synopsis' {
        $markdown = $GoodMarkdown -replace '(?s)### Example 2.*?(?=## PARAMETERS)', '' -replace 'Saves a probe item\.', ''
        $run = Invoke-HelpTool @('-ModulePath', $ProbeManifest, '-MarkdownPath', (New-ProbeDocs $markdown), '-OutputPath', (Join-Path $TestDrive 'u/en-US/Probe.dll-Help.xml'))
        $run.ExitCode | Should -Be 1
        $run.Output | Should -Match '1 example\(s\); at least two are required'
        $run.Output | Should -Match 'the synopsis is empty'
    }

    It 'fails when OUTPUTS misses the [OutputType] or INPUTS misses a by-value pipeline type' {
        $markdown = $GoodMarkdown -replace '### System.IO.FileInfo', '### System.Object' -replace '### System.String\[\]', '### System.Int32'
        $run = Invoke-HelpTool @('-ModulePath', $ProbeManifest, '-MarkdownPath', (New-ProbeDocs $markdown), '-OutputPath', (Join-Path $TestDrive 'q/en-US/Probe.dll-Help.xml'))
        $run.ExitCode | Should -Be 1
        $run.Output | Should -Match 'declares System.IO.FileInfo, which .## OUTPUTS. does not list'
        $run.Output | Should -Match '-Path takes System.String\[\] from the pipeline'
    }

    It "refuses an output folder that is not exactly 'en-US'" {
        $run = Invoke-HelpTool @('-ModulePath', $ProbeManifest, '-MarkdownPath', (New-ProbeDocs $GoodMarkdown), '-OutputPath', (Join-Path $TestDrive 't/en-us/Probe.dll-Help.xml'))
        $run.ExitCode | Should -Be 1
        $run.Output | Should -Match "exactly 'en-US'"
    }

    It '-UpdateMarkdown writes a skeleton whose placeholders fail the next run, and refreshes yaml from the code' {
        $docs = New-ProbeDocs ''
        $run = Invoke-HelpTool @('-ModulePath', $ProbeManifest, '-MarkdownPath', $docs, '-UpdateMarkdown')
        $run.ExitCode | Should -Be 0 -Because $run.Output
        $skeleton = Get-Content (Join-Path $docs 'Save-ProbeItem.md') -Raw
        $skeleton | Should -Match '### -LiteralPath'
        $skeleton | Should -Match 'Aliases: PSPath, LP'
        $run = Invoke-HelpTool @('-ModulePath', $ProbeManifest, '-MarkdownPath', $docs, '-OutputPath', (Join-Path $TestDrive 's/en-US/Probe.dll-Help.xml'))
        $run.ExitCode | Should -Be 1
        $run.Output | Should -Match 'placeholder left'

        $docs = New-ProbeDocs ($GoodMarkdown -replace '(?s)(### -DestinationPath.*?Position: )1', '${1}7')
        $run = Invoke-HelpTool @('-ModulePath', $ProbeManifest, '-MarkdownPath', $docs, '-UpdateMarkdown')
        $run.ExitCode | Should -Be 0 -Because $run.Output
        $run = Invoke-HelpTool @('-ModulePath', $ProbeManifest, '-MarkdownPath', $docs, '-OutputPath', (Join-Path $TestDrive 'r/en-US/Probe.dll-Help.xml'))
        $run.ExitCode | Should -Be 0 -Because $run.Output
        Get-Content (Join-Path $docs 'Save-ProbeItem.md') -Raw | Should -Match 'Default value: Current location'
    }
}
