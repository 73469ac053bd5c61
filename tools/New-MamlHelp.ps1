#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Writes the module's MAML help (en-US/<Assembly>.dll-Help.xml) from docs/en-US/<Cmdlet>.md and the built cmdlets.

.DESCRIPTION
    platyPS is not available here, so this is our own small generator. The facts about each parameter (type,
    parameter sets, mandatory, position, pipeline binding, aliases, wildcards, defaults) come from the imported
    module through Get-Command and the cmdlet class; the prose (synopsis, description, examples, parameter
    descriptions, inputs, outputs, notes, links) comes from platyPS 0.14-style markdown, so platyPS can take over
    later without rewriting the docs.

    The markdown keeps platyPS's per-parameter yaml block. Those blocks and the SYNTAX section are a copy of the code
    for readers of the markdown; they are checked against the code and the run fails when they disagree.

    The run fails (exit code 1, every problem listed) when an exported cmdlet has no markdown, a parameter is not
    described, the markdown describes a parameter the cmdlet lacks, a section is missing or still holds a
    platyPS placeholder ({{ ... }}), or the yaml/syntax copy disagrees with the code. Common parameters are not
    documented per cmdlet; -WhatIf and -Confirm are, as platyPS does.

    -UpdateMarkdown rewrites the SYNTAX sections and the yaml blocks from the code and adds a placeholder section
    for every parameter that has none (or a whole skeleton for a cmdlet without markdown). The prose stays; the
    placeholders make the next MAML run fail until someone writes the text.

.EXAMPLE
    pwsh -File tools/New-MamlHelp.ps1 -ModulePath out/OrasStaging/0.1.0/OrasStaging.psd1 -MarkdownPath docs/en-US -OutputPath out/OrasStaging/0.1.0/en-US/OrasStaging.dll-Help.xml

.EXAMPLE
    pwsh -File tools/New-MamlHelp.ps1 -ModulePath out/OrasStaging/0.1.0/OrasStaging.psd1 -MarkdownPath docs/en-US -UpdateMarkdown
#>
[CmdletBinding(DefaultParameterSetName = 'Maml')]
param(
    [Parameter(Mandatory)]
    [string] $ModulePath,

    [Parameter(Mandatory)]
    [string] $MarkdownPath,

    [Parameter(Mandatory, ParameterSetName = 'Maml')]
    [string] $OutputPath,

    [Parameter(Mandatory, ParameterSetName = 'Update')]
    [switch] $UpdateMarkdown
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$script:Problems = [System.Collections.Generic.List[string]]::new()
function Add-Problem([string] $Message) { $script:Problems.Add($Message) }

$CommonParameters = [System.Management.Automation.Cmdlet]::CommonParameters
$PlaceholderPattern = '\{\{.*?\}\}'
$Sections = 'SYNOPSIS', 'SYNTAX', 'DESCRIPTION', 'EXAMPLES', 'PARAMETERS', 'INPUTS', 'OUTPUTS', 'NOTES', 'RELATED LINKS'

#region Facts from the code

function Get-TypeDisplayName([type] $Type) {
    # Nullable<long> reads as Int64, List`1[String] as List[String]: what a reader of Get-Help expects.
    $inner = [Nullable]::GetUnderlyingType($Type)
    if ($inner) { return Get-TypeDisplayName $inner }
    if ($Type.IsArray) { return (Get-TypeDisplayName $Type.GetElementType()) + '[]' }
    if ($Type.IsGenericType) {
        $name = $Type.Name.Substring(0, $Type.Name.IndexOf('`'))
        return "$name[$(($Type.GetGenericArguments() | ForEach-Object { Get-TypeDisplayName $_ }) -join ', ')]"
    }
    $Type.Name
}

function Get-DefaultValueText($Instance, [string] $Name) {
    # The cmdlet's property initialisers are its defaults; a fresh instance shows them without running it.
    if ($null -eq $Instance) { return $null }
    $property = $Instance.GetType().GetProperty($Name,
        [System.Reflection.BindingFlags]'Public, Instance, IgnoreCase')
    if (-not $property -or -not $property.CanRead) { return $null }
    $value = $property.GetValue($Instance)
    if ($null -eq $value) { return $null }
    if ($value -is [System.Management.Automation.SwitchParameter]) { return $null }
    if ($value -is [enum]) { return $value.ToString() }
    if ($value -is [string] -and $value -eq '') { return $null }
    if ($value -is [array] -and $value.Count -eq 0) { return $null }
    if ($value.GetType().IsValueType -and $value -eq [Activator]::CreateInstance($value.GetType())) { return $null }
    if ($value -is [array]) { return ($value | ForEach-Object { "$_" }) -join ', ' }
    [string]::Format([cultureinfo]::InvariantCulture, '{0}', $value)
}

function Format-PipelineInput($Parameter) {
    $kinds = @()
    if ($Parameter.ValueFromPipeline) { $kinds += 'ByValue' }
    if ($Parameter.ValueFromPipelineByPropertyName) { $kinds += 'ByPropertyName' }
    if ($kinds) { "True ($($kinds -join ', '))" } else { 'False' }
}

function Format-Position($Parameter) {
    if ($Parameter.Position -eq [int]::MinValue) { 'named' } else { [string]$Parameter.Position }
}

function Get-CommandFacts([System.Management.Automation.CmdletInfo] $Command) {
    # One record per documented parameter, plus the parameter sets in Get-Command order for the syntax.
    $instance = $null
    try { $instance = [Activator]::CreateInstance($Command.ImplementingType) } catch { $instance = $null }

    $sets = @(foreach ($set in $Command.ParameterSets) {
            $params = @($set.Parameters | Where-Object { $_.Name -notin $CommonParameters })
            $positional = @($params | Where-Object Position -ne ([int]::MinValue) | Sort-Object Position)
            $named = @($params | Where-Object Position -eq ([int]::MinValue) |
                    Sort-Object @{ Expression = { -not $_.IsMandatory } }, @{ Expression = { $_.Name -in 'WhatIf', 'Confirm' } }, Name)
            [pscustomobject]@{ Name = $set.Name; IsDefault = $set.IsDefault; Parameters = @($positional + $named) }
        })

    $allSetNames = @($Command.ParameterSets.Name)
    $parameters = [ordered]@{}
    foreach ($name in ($Command.Parameters.Keys | Where-Object { $_ -notin $CommonParameters } | Sort-Object)) {
        $meta = $Command.Parameters[$name]
        $inSets = @(foreach ($set in $sets) { $set.Parameters | Where-Object Name -eq $name | ForEach-Object { [pscustomobject]@{ Set = $set.Name; Info = $_ } } })
        if (-not $inSets) { continue }
        $setNames = @($inSets | ForEach-Object Set)
        $setText = if ($setNames.Count -eq $allSetNames.Count) { '(All)' } else { $setNames -join ', ' }
        $perSet = { param($Selector) $values = @($inSets | ForEach-Object { & $Selector $_.Info } | Select-Object -Unique)
            if ($values.Count -eq 1) { $values[0] } else { ($inSets | ForEach-Object { "$(& $Selector $_.Info) ($($_.Set))" }) -join ', ' } }
        $first = $inSets[0].Info
        $parameters[$name] = [pscustomobject]@{
            Name         = $name
            Type         = Get-TypeDisplayName $meta.ParameterType
            FullType     = $meta.ParameterType.FullName
            IsSwitch     = $meta.SwitchParameter
            ParameterSet = $setText
            Aliases      = @($meta.Aliases)
            Required     = & $perSet { param($p) if ($p.IsMandatory) { 'True' } else { 'False' } }
            Position     = & $perSet { param($p) if ($p.Position -eq [int]::MinValue) { 'Named' } else { [string]$p.Position } }
            Pipeline     = & $perSet { param($p) Format-PipelineInput $p }
            Wildcards    = [bool]($meta.Attributes | Where-Object { $_ -is [System.Management.Automation.SupportsWildcardsAttribute] })
            Default      = Get-DefaultValueText $instance $name
            # For the MAML attributes: mandatory anywhere it appears, its first position and binding.
            MamlRequired = [bool]($inSets | Where-Object { $_.Info.IsMandatory })
            MamlPosition = Format-Position $first
            MamlPipeline = Format-PipelineInput $first
        }
    }
    [pscustomobject]@{ Command = $Command; Sets = $sets; Parameters = $parameters }
}

function Get-SyntaxText($Facts) {
    # The same shape Get-Command -Syntax and platyPS print.
    foreach ($set in $Facts.Sets) {
        $parts = foreach ($p in $set.Parameters) {
            $fact = $Facts.Parameters[$p.Name]
            $nameText = if ($p.Position -ne [int]::MinValue) { "[-$($p.Name)]" } else { "-$($p.Name)" }
            $text = if ($fact.IsSwitch) { "-$($p.Name)" } else { "$nameText <$($fact.Type)>" }
            if ($p.IsMandatory) { $text } else { "[$text]" }
        }
        [pscustomobject]@{ Set = $set.Name; IsDefault = $set.IsDefault
            Text = (@($Facts.Command.Name) + @($parts) + '[<CommonParameters>]') -join ' ' }
    }
}

function Get-YamlText($Fact) {
    @(
        "Type: $($Fact.Type)"
        "Parameter Sets: $($Fact.ParameterSet)"
        "Aliases: $($Fact.Aliases -join ', ')".TrimEnd()
        ''
        "Required: $($Fact.Required)"
        "Position: $($Fact.Position)"
        "Default value: $(if ($null -ne $Fact.Default) { $Fact.Default } elseif ($Fact.IsSwitch) { 'False' } else { 'None' })"
        "Accept pipeline input: $($Fact.Pipeline)"
        "Accept wildcard characters: $($Fact.Wildcards)"
    ) -join "`n"
}

#endregion

#region Markdown (platyPS 0.14 shape)

function Split-Paragraphs([string[]] $Lines) {
    # Blank lines separate paragraphs; list items and fenced blocks stay on their own.
    $paragraphs = [System.Collections.Generic.List[string]]::new()
    $current = [System.Collections.Generic.List[string]]::new()
    $inFence = $false
    $flush = { if ($current.Count) { $paragraphs.Add(($current -join $(if ($inFence) { "`n" } else { ' ' })).Trim()); $current.Clear() } }
    foreach ($line in $Lines) {
        if ($line -match '^\s*```') {
            if ($inFence) { $inFence = $false; $paragraphs.Add(($current -join "`n")); $current.Clear() }
            else { & $flush; $inFence = $true }
            continue
        }
        if ($inFence) { $current.Add($line); continue }
        if ($line -match '^\s*$') { & $flush; continue }
        if ($line -match '^\s*([-*]|\d+\.)\s') { & $flush }
        $current.Add($line.Trim())
    }
    & $flush
    @($paragraphs | Where-Object { $_ -ne '' })
}

function Read-HelpMarkdown([string] $Path) {
    $lines = (Get-Content -LiteralPath $Path -Raw) -split '\r?\n'
    $doc = [ordered]@{ Path = $Path; Name = $null; Sections = [ordered]@{}; Lines = $lines }
    $i = 0
    if ($lines.Count -and $lines[0] -eq '---') {
        $i = 1
        while ($i -lt $lines.Count -and $lines[$i] -ne '---') { $i++ }
        $i++
    }
    $section = $null
    $inFence = $false
    for (; $i -lt $lines.Count; $i++) {
        $line = $lines[$i]
        if ($line -match '^\s*```') { $inFence = -not $inFence }
        if (-not $inFence -and $line -match '^# (\S+)\s*$') { $doc.Name = $Matches[1]; continue }
        if (-not $inFence -and $line -match '^## (.+?)\s*$') {
            $section = $Matches[1].ToUpperInvariant()
            $doc.Sections[$section] = [System.Collections.Generic.List[string]]::new()
            continue
        }
        if ($section) { $doc.Sections[$section].Add($line) }
    }
    [pscustomobject]$doc
}

function Split-Subsections([string[]] $Lines) {
    # "### Heading" blocks of a section, in order, each with its body lines.
    $items = [System.Collections.Generic.List[object]]::new()
    $current = $null
    $inFence = $false
    foreach ($line in $Lines) {
        if ($line -match '^\s*```') { $inFence = -not $inFence }
        if (-not $inFence -and $line -match '^### (.+?)\s*$') {
            $current = [pscustomobject]@{ Title = $Matches[1]; Lines = [System.Collections.Generic.List[string]]::new() }
            $items.Add($current)
            continue
        }
        if ($current) { $current.Lines.Add($line) }
    }
    $items.ToArray()
}

function Read-ParameterDocs([string[]] $Lines) {
    $result = [ordered]@{}
    foreach ($sub in Split-Subsections $Lines) {
        if ($sub.Title -eq 'CommonParameters') { continue }
        $name = $sub.Title -replace '^-', ''
        $prose = [System.Collections.Generic.List[string]]::new()
        $yaml = [System.Collections.Generic.List[string]]::new()
        $inYaml = $false
        foreach ($line in $sub.Lines) {
            if ($line -match '^\s*```yaml') { $inYaml = $true; continue }
            if ($inYaml -and $line -match '^\s*```') { $inYaml = $false; continue }
            if ($inYaml) { $yaml.Add($line) } else { $prose.Add($line) }
        }
        $fields = [ordered]@{}
        foreach ($y in $yaml) { if ($y -match '^([^:]+):\s*(.*)$') { $fields[$Matches[1].Trim()] = $Matches[2].Trim() } }
        $result[$name] = [pscustomobject]@{ Name = $name; Paragraphs = @(Split-Paragraphs $prose); Yaml = $fields; HasYaml = $yaml.Count -gt 0 }
    }
    $result
}

function Read-Examples([string[]] $Lines) {
    foreach ($sub in Split-Subsections $Lines) {
        $code = [System.Collections.Generic.List[string]]::new()
        $remarks = [System.Collections.Generic.List[string]]::new()
        $fence = $null
        $block = $null
        foreach ($line in $sub.Lines) {
            if ($null -eq $fence -and $line -match '^\s*```\s*(\S*)') {
                $fence = $Matches[1]; $block = [System.Collections.Generic.List[string]]::new(); continue
            }
            if ($null -ne $fence -and $line -match '^\s*```\s*$') {
                # The command goes into <dev:code>; an output block after the remarks is shown as a remark.
                if ($fence -in '', 'powershell', 'ps', 'pwsh' -and $remarks.Count -eq 0) { if ($code.Count) { $code.Add('') }; $code.AddRange($block) }
                else { $remarks.Add(''); $remarks.Add('```'); $remarks.AddRange($block); $remarks.Add('```'); $remarks.Add('') }
                $fence = $null; continue
            }
            if ($null -ne $fence) { $block.Add($line) } else { $remarks.Add($line) }
        }
        [pscustomobject]@{ Title = $sub.Title; Code = ($code -join "`n").Trim("`n"); Remarks = @(Split-Paragraphs $remarks) }
    }
}

function Read-TypeList([string[]] $Lines) {
    foreach ($sub in Split-Subsections $Lines) {
        [pscustomobject]@{ Type = $sub.Title.Trim('`'); Paragraphs = @(Split-Paragraphs $sub.Lines) }
    }
}

function Read-Links([string[]] $Lines) {
    foreach ($line in $Lines) {
        if ($line -match '^\s*\[(?<text>[^\]]*)\]\((?<uri>[^)]*)\)') {
            [pscustomobject]@{ Text = $Matches.text; Uri = $Matches.uri }
        }
    }
}

function Get-SectionText($Doc, [string] $Name) {
    if ($Doc.Sections.Contains($Name)) { @($Doc.Sections[$Name]) } else { @() }
}

#endregion

#region Checks

function Test-HelpDocument($Doc, $Facts) {
    $name = $Facts.Command.Name
    $where = "$name ($($Doc.Path))"
    if ($Doc.Name -ne $name) { Add-Problem "${where}: the '# title' is '$($Doc.Name)', expected '$name'." }
    foreach ($section in $Sections) {
        if (-not $Doc.Sections.Contains($section)) { Add-Problem "${where}: section '## $section' is missing." }
    }
    foreach ($line in $Doc.Lines) {
        if ($line -match $PlaceholderPattern) { Add-Problem "${where}: placeholder left: '$($Matches[0])'." }
    }
    if (-not (Split-Paragraphs (Get-SectionText $Doc 'SYNOPSIS'))) { Add-Problem "${where}: the synopsis is empty." }
    if (-not (Split-Paragraphs (Get-SectionText $Doc 'DESCRIPTION'))) { Add-Problem "${where}: the description is empty." }
    $examples = @(Read-Examples (Get-SectionText $Doc 'EXAMPLES'))
    if ($examples.Count -lt 2) { Add-Problem "${where}: $($examples.Count) example(s); at least two are required." }
    foreach ($example in $examples) {
        if (-not $example.Code) { Add-Problem "${where}: example '$($example.Title)' has no code block." }
        if (-not $example.Remarks) { Add-Problem "${where}: example '$($example.Title)' has no remarks." }
    }

    # The SYNTAX section must be the code's syntax, one fenced block per parameter set.
    $documentedSyntax = @(Split-Subsections (Get-SectionText $Doc 'SYNTAX') | ForEach-Object {
            [pscustomobject]@{ Set = ($_.Title -replace ' \(Default\)$', ''); Text = ((Split-Paragraphs $_.Lines) -join ' ') -replace '\s+', ' ' }
        })
    $codeSyntax = @(Get-SyntaxText $Facts)
    if ($codeSyntax.Count -eq 1 -and $documentedSyntax.Count -eq 0) {
        $documentedSyntax = @([pscustomobject]@{ Set = $codeSyntax[0].Set; Text = ((Split-Paragraphs (Get-SectionText $Doc 'SYNTAX')) -join ' ') -replace '\s+', ' ' })
    }
    $documentedText = ($documentedSyntax | ForEach-Object { "$($_.Set): $($_.Text)" }) -join "`n"
    $codeText = ($codeSyntax | ForEach-Object { "$($_.Set): $($_.Text)" }) -join "`n"
    if ($documentedText -ne $codeText) {
        Add-Problem "${where}: the SYNTAX section disagrees with the code (run New-MamlHelp.ps1 -UpdateMarkdown).`n  code:`n    $($codeText -replace "`n", "`n    ")`n  markdown:`n    $($documentedText -replace "`n", "`n    ")"
    }

    $documented = Read-ParameterDocs (Get-SectionText $Doc 'PARAMETERS')
    foreach ($parameter in $Facts.Parameters.Values) {
        if (-not $documented.Contains($parameter.Name)) { Add-Problem "${where}: parameter -$($parameter.Name) is not documented."; continue }
        $paramDoc = $documented[$parameter.Name]
        if (-not $paramDoc.Paragraphs) { Add-Problem "${where}: parameter -$($parameter.Name) has no description." }
        if (-not $paramDoc.HasYaml) { Add-Problem "${where}: parameter -$($parameter.Name) has no yaml block."; continue }
        $expected = [ordered]@{}
        foreach ($line in (Get-YamlText $parameter) -split "`n") { if ($line -match '^([^:]+):\s*(.*)$') { $expected[$Matches[1]] = $Matches[2].Trim() } }
        foreach ($key in $expected.Keys) {
            $actual = if ($paramDoc.Yaml.Contains($key)) { $paramDoc.Yaml[$key] } else { '<missing>' }
            if ($key -eq 'Default value' -and $null -eq $parameter.Default -and -not $parameter.IsSwitch -and $actual -ne '<missing>') { continue } # prose default (e.g. "Current location") is allowed when the code has none
            if ($actual -ne $expected[$key]) {
                Add-Problem "${where}: parameter -$($parameter.Name): yaml '$key' says '$actual', the code says '$($expected[$key])'."
            }
        }
    }
    foreach ($extra in $documented.Keys | Where-Object { -not $Facts.Parameters.Contains($_) }) {
        Add-Problem "${where}: documents parameter -$extra, which the cmdlet does not have."
    }
    foreach ($section in 'INPUTS', 'OUTPUTS') {
        if (-not @(Read-TypeList (Get-SectionText $Doc $section))) { Add-Problem "${where}: '## $section' lists no type (use '### None' when there is none)." }
    }
    # What [OutputType] declares and what binds from the pipeline by value must be listed.
    $outputs = @(Read-TypeList (Get-SectionText $Doc 'OUTPUTS') | ForEach-Object Type)
    foreach ($type in $Facts.Command.OutputType) {
        if ($type.Name -notin $outputs) { Add-Problem "${where}: [OutputType] declares $($type.Name), which '## OUTPUTS' does not list." }
    }
    $inputs = @(Read-TypeList (Get-SectionText $Doc 'INPUTS') | ForEach-Object Type)
    foreach ($parameter in $Facts.Command.Parameters.Values | Where-Object { $_.ParameterSets.Values | Where-Object ValueFromPipeline }) {
        $type = $parameter.ParameterType
        $names = @($type.FullName) + @(if ($type.IsArray) { $type.GetElementType().FullName })
        if (-not ($names | Where-Object { $_ -in $inputs })) {
            Add-Problem "${where}: -$($parameter.Name) takes $($type.FullName) from the pipeline, which '## INPUTS' does not list."
        }
    }
}

#endregion

#region MAML

$NsMaml = 'http://schemas.microsoft.com/maml/2004/10'
$NsCommand = 'http://schemas.microsoft.com/maml/dev/command/2004/10'
$NsDev = 'http://schemas.microsoft.com/maml/dev/2004/10'

function Write-Paragraphs([System.Xml.XmlWriter] $W, [string[]] $Paragraphs) {
    if (-not $Paragraphs) { $W.WriteElementString('maml', 'para', $NsMaml, ''); return }
    foreach ($p in $Paragraphs) { $W.WriteElementString('maml', 'para', $NsMaml, $p) }
}

function Write-Description([System.Xml.XmlWriter] $W, [string[]] $Paragraphs) {
    $W.WriteStartElement('maml', 'description', $NsMaml)
    Write-Paragraphs $W $Paragraphs
    $W.WriteEndElement()
}

function Write-Parameter([System.Xml.XmlWriter] $W, $Fact, $Doc, [bool] $Required, [string] $Position, [string] $Pipeline, [bool] $InSyntax) {
    $W.WriteStartElement('command', 'parameter', $NsCommand)
    $W.WriteAttributeString('required', $Required.ToString().ToLowerInvariant())
    $W.WriteAttributeString('variableLength', 'true')
    $W.WriteAttributeString('globbing', $Fact.Wildcards.ToString().ToLowerInvariant())
    $W.WriteAttributeString('pipelineInput', $Pipeline)
    $W.WriteAttributeString('position', $Position)
    $W.WriteAttributeString('aliases', $(if ($Fact.Aliases) { $Fact.Aliases -join ', ' } else { 'none' }))
    $W.WriteElementString('maml', 'name', $NsMaml, $Fact.Name)
    Write-Description $W $Doc.Paragraphs
    # A switch has no value in the syntax; Get-Help would otherwise print "-Force <SwitchParameter>".
    if (-not ($InSyntax -and $Fact.IsSwitch)) {
        $W.WriteStartElement('command', 'parameterValue', $NsCommand)
        $W.WriteAttributeString('required', $(if ($Fact.IsSwitch) { 'false' } else { 'true' }))
        $W.WriteAttributeString('variableLength', 'false')
        $W.WriteString($Fact.Type)
        $W.WriteEndElement()
    }
    $W.WriteStartElement('dev', 'type', $NsDev)
    $W.WriteElementString('maml', 'name', $NsMaml, $Fact.Type)
    $W.WriteElementString('maml', 'uri', $NsMaml, '')
    $W.WriteEndElement()
    $default = if ($null -ne $Fact.Default) { $Fact.Default }
    elseif ($Doc.Yaml.Contains('Default value') -and $Doc.Yaml['Default value']) { $Doc.Yaml['Default value'] }
    elseif ($Fact.IsSwitch) { 'False' } else { 'None' }
    $W.WriteElementString('dev', 'defaultValue', $NsDev, $default)
    $W.WriteEndElement()
}

function Write-TypeList([System.Xml.XmlWriter] $W, [string] $ListName, [string] $ItemName, $Items) {
    $W.WriteStartElement('command', $ListName, $NsCommand)
    foreach ($item in $Items) {
        $W.WriteStartElement('command', $ItemName, $NsCommand)
        $W.WriteStartElement('dev', 'type', $NsDev)
        $W.WriteElementString('maml', 'name', $NsMaml, $item.Type)
        $W.WriteEndElement()
        Write-Description $W $item.Paragraphs
        $W.WriteEndElement()
    }
    $W.WriteEndElement()
}

function Write-Command([System.Xml.XmlWriter] $W, $Doc, $Facts) {
    $command = $Facts.Command
    $parameterDocs = Read-ParameterDocs (Get-SectionText $Doc 'PARAMETERS')
    $W.WriteStartElement('command', 'command', $NsCommand)
    $W.WriteAttributeString('xmlns', 'maml', $null, $NsMaml)
    $W.WriteAttributeString('xmlns', 'command', $null, $NsCommand)
    $W.WriteAttributeString('xmlns', 'dev', $null, $NsDev)
    $W.WriteAttributeString('xmlns', 'MSHelp', $null, 'http://msdn.microsoft.com/mshelp')

    $W.WriteStartElement('command', 'details', $NsCommand)
    $W.WriteElementString('command', 'name', $NsCommand, $command.Name)
    $W.WriteElementString('command', 'verb', $NsCommand, $command.Verb)
    $W.WriteElementString('command', 'noun', $NsCommand, $command.Noun)
    Write-Description $W (Split-Paragraphs (Get-SectionText $Doc 'SYNOPSIS'))
    $W.WriteEndElement()

    Write-Description $W (Split-Paragraphs (Get-SectionText $Doc 'DESCRIPTION'))

    $W.WriteStartElement('command', 'syntax', $NsCommand)
    foreach ($set in $Facts.Sets) {
        $W.WriteStartElement('command', 'syntaxItem', $NsCommand)
        $W.WriteElementString('maml', 'name', $NsMaml, $command.Name)
        foreach ($p in $set.Parameters) {
            Write-Parameter $W $Facts.Parameters[$p.Name] $parameterDocs[$p.Name] $p.IsMandatory (Format-Position $p) (Format-PipelineInput $p) $true
        }
        $W.WriteEndElement()
    }
    $W.WriteEndElement()

    $W.WriteStartElement('command', 'parameters', $NsCommand)
    foreach ($fact in $Facts.Parameters.Values) {
        Write-Parameter $W $fact $parameterDocs[$fact.Name] $fact.MamlRequired $fact.MamlPosition $fact.MamlPipeline $false
    }
    $W.WriteEndElement()

    Write-TypeList $W 'inputTypes' 'inputType' @(Read-TypeList (Get-SectionText $Doc 'INPUTS'))
    Write-TypeList $W 'returnValues' 'returnValue' @(Read-TypeList (Get-SectionText $Doc 'OUTPUTS'))

    $W.WriteStartElement('maml', 'alertSet', $NsMaml)
    $W.WriteStartElement('maml', 'alert', $NsMaml)
    Write-Paragraphs $W (Split-Paragraphs (Get-SectionText $Doc 'NOTES'))
    $W.WriteEndElement()
    $W.WriteEndElement()

    $W.WriteStartElement('command', 'examples', $NsCommand)
    $n = 0
    foreach ($example in Read-Examples (Get-SectionText $Doc 'EXAMPLES')) {
        $n++
        $W.WriteStartElement('command', 'example', $NsCommand)
        # Dashes as PowerShell's own help has them, fewer for a long title so the line fits 80 columns.
        $dashes = '-' * [Math]::Max(3, [Math]::Min(26, [Math]::Floor((76 - $example.Title.Length) / 2)))
        $W.WriteElementString('maml', 'title', $NsMaml, "$dashes $($example.Title) $dashes")
        $W.WriteElementString('dev', 'code', $NsDev, $example.Code)
        $W.WriteStartElement('dev', 'remarks', $NsDev)
        Write-Paragraphs $W $example.Remarks
        # An empty paragraph sets the next example's title apart, as in PowerShell's own help.
        $W.WriteElementString('maml', 'para', $NsMaml, '')
        $W.WriteEndElement()
        $W.WriteEndElement()
    }
    $W.WriteEndElement()

    # Get-Help -Online takes the first link with a URI; the HelpUri of the cmdlet goes first.
    $W.WriteStartElement('command', 'relatedLinks', $NsCommand)
    $links = @()
    if ($command.HelpUri) { $links += [pscustomobject]@{ Text = 'Online Version:'; Uri = $command.HelpUri } }
    $links += @(Read-Links (Get-SectionText $Doc 'RELATED LINKS') | Where-Object { $_.Uri -ne $command.HelpUri })
    foreach ($link in $links) {
        $W.WriteStartElement('maml', 'navigationLink', $NsMaml)
        $W.WriteElementString('maml', 'linkText', $NsMaml, $link.Text)
        $W.WriteElementString('maml', 'uri', $NsMaml, $link.Uri)
        $W.WriteEndElement()
    }
    $W.WriteEndElement()

    $W.WriteEndElement()
}

#endregion

#region Markdown update

function New-MarkdownSkeleton($Facts) {
    $c = $Facts.Command
    @(
        '---'
        "external help file: $(Split-Path -Leaf $c.ImplementingType.Assembly.Location)-Help.xml"
        "Module Name: $($c.ModuleName)"
        "online version: $($c.HelpUri)"
        'schema: 2.0.0'
        '---'
        ''
        "# $($c.Name)"
        ''
        '## SYNOPSIS'
        '{{ Fill in the Synopsis }}'
        ''
        '## SYNTAX'
        ''
        '## DESCRIPTION'
        '{{ Fill in the Description }}'
        ''
        '## EXAMPLES'
        ''
        '### Example 1'
        '```powershell'
        '{{ Add example code here }}'
        '```'
        ''
        '{{ Add example description here }}'
        ''
        '## PARAMETERS'
        ''
        '### CommonParameters'
        'This cmdlet supports the common parameters: -Debug, -ErrorAction, -ErrorVariable, -InformationAction, -InformationVariable, -OutBuffer, -OutVariable, -PipelineVariable, -ProgressAction, -Verbose, -WarningAction, and -WarningVariable. For more information, see [about_CommonParameters](http://go.microsoft.com/fwlink/?LinkID=113216).'
        ''
        '## INPUTS'
        ''
        '## OUTPUTS'
        ''
        '## NOTES'
        ''
        '## RELATED LINKS'
        ''
        "[Online Version:]($($c.HelpUri))"
        ''
    ) -join "`n"
}

function Update-HelpMarkdown([string] $Path, $Facts) {
    if (-not (Test-Path -LiteralPath $Path)) {
        [IO.File]::WriteAllText($Path, (New-MarkdownSkeleton $Facts))
        Write-Host "Created $Path (placeholders to fill)."
    }
    $lines = [System.Collections.Generic.List[string]]((Get-Content -LiteralPath $Path -Raw) -split '\r?\n')

    # SYNTAX: replace the section body.
    $start = $lines.IndexOf('## SYNTAX')
    $end = $start + 1
    while ($end -lt $lines.Count -and $lines[$end] -notmatch '^## ') { $end++ }
    $syntax = [System.Collections.Generic.List[string]]::new()
    $syntax.Add('')
    foreach ($s in Get-SyntaxText $Facts) {
        if (@($Facts.Sets).Count -gt 1) { $syntax.Add("### $($s.Set)$(if ($s.IsDefault) { ' (Default)' })") }
        $syntax.Add('```'); $syntax.Add($s.Text); $syntax.Add('```'); $syntax.Add('')
    }
    $lines.RemoveRange($start + 1, $end - $start - 1)
    $lines.InsertRange($start + 1, $syntax)

    # PARAMETERS: refresh yaml blocks, add missing sections before CommonParameters, in name order.
    foreach ($fact in $Facts.Parameters.Values) {
        $yaml = @('```yaml') + ((Get-YamlText $fact) -split "`n") + '```'
        $heading = $lines.IndexOf("### -$($fact.Name)")
        if ($heading -lt 0) {
            $anchor = $lines.IndexOf('### CommonParameters')
            $later = @($Facts.Parameters.Keys | Where-Object { $_ -gt $fact.Name } | ForEach-Object { $lines.IndexOf("### -$_") } | Where-Object { $_ -ge 0 } | Sort-Object)
            if ($later) { $anchor = $later[0] }
            $description = switch ($fact.Name) {
                'WhatIf' { 'Shows what would happen if the cmdlet runs. The cmdlet is not run.' }
                'Confirm' { 'Prompts you for confirmation before running the cmdlet.' }
                default { "{{ Fill $($fact.Name) Description }}" }
            }
            $lines.InsertRange($anchor, [string[]](@("### -$($fact.Name)", $description, '') + $yaml + ''))
            continue
        }
        $open = $heading + 1
        while ($open -lt $lines.Count -and $lines[$open] -notmatch '^```yaml' -and $lines[$open] -notmatch '^##') { $open++ }
        if ($open -ge $lines.Count -or $lines[$open] -notmatch '^```yaml') {
            $lines.InsertRange($open, [string[]]($yaml + '')); continue
        }
        $close = $open + 1
        while ($lines[$close] -notmatch '^```') { $close++ }
        # A prose default the code cannot know (e.g. "Current location") survives the refresh.
        $old = @($lines.GetRange($open, $close - $open + 1)) | Where-Object { $_ -match '^Default value:' }
        if ($null -eq $fact.Default -and -not $fact.IsSwitch -and $old) { $yaml = $yaml -replace '^Default value:.*$', $old }
        $lines.RemoveRange($open, $close - $open + 1)
        $lines.InsertRange($open, [string[]]$yaml)
    }
    [IO.File]::WriteAllText($Path, ($lines -join "`n"))
}

#endregion

# A relative path without ./ would be taken for a module name.
$module = Import-Module (Resolve-Path -LiteralPath $ModulePath).ProviderPath -Force -PassThru -ErrorAction Stop
$cmdlets = @($module.ExportedCmdlets.Values | Sort-Object Name)
if (-not (Test-Path -LiteralPath $MarkdownPath -PathType Container)) { throw "Markdown folder not found: $MarkdownPath" }

if ($UpdateMarkdown) {
    foreach ($command in $cmdlets) {
        Update-HelpMarkdown (Join-Path $MarkdownPath "$($command.Name).md") (Get-CommandFacts $command)
    }
    exit 0
}

# Get-Help looks for help only in a folder named exactly like the culture; "en-us" is not found on Linux.
$outputDir = Split-Path -Parent ([IO.Path]::GetFullPath($OutputPath))
if ((Split-Path -Leaf $outputDir) -cne 'en-US') { Add-Problem "The output folder must be named exactly 'en-US', not '$(Split-Path -Leaf $outputDir)'." }
# Get-Help looks for <file name of the cmdlet's dll>-Help.xml.
$dlls = @($cmdlets | ForEach-Object { Split-Path -Leaf $_.ImplementingType.Assembly.Location } | Select-Object -Unique)
foreach ($dll in $dlls) {
    if ((Split-Path -Leaf $OutputPath) -ne "$dll-Help.xml") { Add-Problem "The help file must be named '$dll-Help.xml' for Get-Help to find it." }
}

$work = foreach ($command in $cmdlets) {
    $path = Join-Path $MarkdownPath "$($command.Name).md"
    $facts = Get-CommandFacts $command
    if (-not (Test-Path -LiteralPath $path)) { Add-Problem "$($command.Name): no help markdown at $path."; continue }
    $doc = Read-HelpMarkdown $path
    Test-HelpDocument $doc $facts
    [pscustomobject]@{ Doc = $doc; Facts = $facts }
}
$exported = @($cmdlets | ForEach-Object Name)
foreach ($file in Get-ChildItem -LiteralPath $MarkdownPath -Filter '*-*.md') {
    if ($file.BaseName -notin $exported) { Add-Problem "$($file.Name) documents '$($file.BaseName)', which the module does not export." }
}

if ($script:Problems.Count) {
    foreach ($problem in $script:Problems) { [Console]::Error.WriteLine("New-MamlHelp: $problem") }
    [Console]::Error.WriteLine("New-MamlHelp: $($script:Problems.Count) problem(s); no help written.")
    exit 1
}

$null = New-Item -ItemType Directory -Force $outputDir
$settings = [System.Xml.XmlWriterSettings]@{ Indent = $true; IndentChars = '  '; Encoding = [System.Text.UTF8Encoding]::new($true); NewLineChars = "`n" }
$writer = [System.Xml.XmlWriter]::Create([IO.Path]::GetFullPath($OutputPath), $settings)
try {
    $writer.WriteStartDocument()
    $writer.WriteStartElement('helpItems', 'http://msh')
    $writer.WriteAttributeString('schema', 'maml')
    foreach ($item in $work) { Write-Command $writer $item.Doc $item.Facts }
    $writer.WriteEndElement()
    $writer.WriteEndDocument()
}
finally {
    $writer.Dispose()
}
Write-Host "Wrote help for $(@($work).Count) cmdlet(s) to $OutputPath"
exit 0
